"""A researcher's own SDE, defined in their config file, runs through main.py with no
other edit: one dataclass and one registry line (sde_lib.SDES), then training, the
likelihood and three samplers, as good as the built-in VP SDE's run."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests import stats
from tests.test_training import ROOT

QUADRATIC_VP_CONFIG = '''
import dataclasses

import jax.numpy as jnp

import sde_lib
from configs import default_toy


@dataclasses.dataclass(frozen=True)
class QuadraticVPSDE(sde_lib.SDE):
  """VP SDE with beta(t) = beta_min + (beta_max - beta_min) (t / T)^2: f = -beta / 2,
  g = sqrt(beta), alpha = exp(-B / 2) with B = int_0^t beta, sigma^2 = 1 - alpha^2."""

  N: int = 1000
  T: float = 1.0
  beta_min: float = 0.1
  beta_max: float = 20.0

  def marginal(self, t):
    beta_integral = (self.beta_min * t
                     + (self.beta_max - self.beta_min) * t**3 / (3 * self.T**2))
    return jnp.exp(-0.5 * beta_integral), jnp.sqrt(-jnp.expm1(-beta_integral))

  def coefficients(self, t):
    beta = self.beta_min + (self.beta_max - self.beta_min) * (t / self.T) ** 2
    return -0.5 * beta, jnp.sqrt(beta)


sde_lib.SDES["quadratic_vp"] = QuadraticVPSDE


def get_config():
  config = default_toy.get_default_configs()
  config.sde.name = "quadratic_vp"
  return config
'''

SAMPLERS = ("pc", "ddim", "ode")
FLAGS = ["--mode=train_eval", "--config.training.n_iters=3000", "--config.model.ema_rate=0.99",
         "--config.training.snapshot_freq=3000",
         "--config.training.snapshot_freq_for_preemption=3000",
         "--config.sampling.num_samples=2000", "--config.sampling.batch_size=2000",
         f"--config.eval.samplers=({','.join(repr(s) for s in SAMPLERS)},)"]


def _train_eval(config_path, workdir) -> dict:
  result = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"),
                           f"--config={config_path}", f"--workdir={workdir}", *FLAGS],
                          capture_output=True, text=True, cwd=ROOT, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(os.path.join(workdir, "metrics.json")) as f:
    return json.load(f)


@pytest.mark.slow
def test_an_sde_defined_in_a_config_file_trains_samples_and_matches_the_built_in_vp(tmp_path):
  """~3 min on 2 CPU cores. Both runs: 3000 steps of the toy mixture. The user's SDE's
  held-out NLL gap (an estimate of KL(p || model)) equals the built-in VP run's within
  the SE of their difference, and every sampler recovers the mixture weights."""
  config_path = tmp_path / "quadratic_vp.py"
  config_path.write_text(QUADRATIC_VP_CONFIG)
  user = _train_eval(config_path, tmp_path / "user")
  built_in = _train_eval(os.path.join(ROOT, "configs", "toy", "vp_gmm.py"), tmp_path / "vp")
  se = np.hypot(user["nll_gap_se"], built_in["nll_gap_se"])
  assert abs(user["nll_gap"] - built_in["nll_gap"]) < stats.Z * se, (user, built_in)
  assert user["nll_gap"] < 0.05, user
  n = 2000
  for method in SAMPLERS:
    for w, w_true in zip(user[f"{method}/weights"], user[f"{method}/true_weights"]):
      assert abs(w - w_true) < stats.Z * np.sqrt(w_true * (1 - w_true) / n), (method, user)

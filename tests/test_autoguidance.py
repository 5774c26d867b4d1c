"""Autoguidance (controllable_generation.autoguidance): the transform is its formula, in
the score form and in the denoiser form it is published in; with weak = main it is the
identity at every weight; config.sampling.autoguidance reaches the samplers and modes,
and a missing weak model or a bad weight is one line."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import controllable_generation as cg
import densities
import run
import sampling
import sde_lib
from configs.toy import vp_gmm
from infra import weights
from infra import workdir as wd
from run import build
from run import evaluate
from run import train as run_train
from tests.test_training import shrink

MAIN = densities.GaussianMixture(jnp.array([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]]),
                                 jnp.array([0.3, 0.5, 0.4]), jnp.array([0.5, 0.3, 0.2]))
# Degraded: components 1.8x wider, weights halfway to uniform.
WEAK = densities.GaussianMixture(MAIN.means, 1.8 * MAIN.stds, 0.5 * MAIN.weights + 0.5 / 3)
WEIGHTS = (0.0, 0.5, 1.0, 2.0, 7.3)


@pytest.mark.parametrize("sde", [sde_lib.VPSDE(), sde_lib.VESDE()], ids=["vp", "ve"])
def test_autoguidance_is_its_formula_in_score_and_denoiser_form(sde):
  x = jax.random.normal(jax.random.PRNGKey(0), (64, 2)) * 3.0
  t = jnp.linspace(0.02, 1.0, 64)
  main, weak = MAIN.score_fn(sde), WEAK.score_fn(sde)
  denoiser = lambda score_fn: sampling.tweedie_denoise(sde, score_fn, x, t)
  s_main, s_weak = main(x, t), weak(x, t)
  assert float(jnp.abs(s_main - s_weak).max()) > 1.0     # the two models differ
  for w in WEIGHTS:
    guided = cg.autoguidance(main, weak, w)
    np.testing.assert_allclose(guided(x, t), s_weak + w * (s_main - s_weak),
                               rtol=1e-6, atol=1e-5)
    # Karras et al.'s form: D_w = D_weak + w (D - D_weak), D = (x + sigma^2 s) / alpha.
    d_main, d_weak = denoiser(main), denoiser(weak)
    np.testing.assert_allclose(denoiser(guided), d_weak + w * (d_main - d_weak),
                               rtol=1e-5, atol=1e-4 * float(jnp.abs(d_main).max()))
    # weak = main: the identity, exactly.
    np.testing.assert_array_equal(cg.autoguidance(main, main, w)(x, t), s_main)


def _config(**autoguidance):
  config = shrink(vp_gmm.get_config(), n_iters=10)
  config.training.log_freq = config.training.snapshot_freq = 5
  config.training.snapshot_freq_for_preemption = 5
  config.sampling.method, config.sampling.ddim.num_steps = "ddim", 5
  config.sampling.num_samples = config.sampling.batch_size = 16
  config.sampling.autoguidance.update(autoguidance)
  return config


def test_bad_autoguidance_settings_are_one_line(tmp_path):
  with pytest.raises(run.RunError, match=r"autoguidance.weight=3.0 needs a weak model"):
    build.build(_config(weight=3.0))
  with pytest.raises(run.RunError, match=r"autoguidance.weight=-1.0: must be >= 0"):
    build.build(_config(workdir=str(tmp_path), weight=-1.0))
  with pytest.raises(run.RunError, match=r"autoguidance.checkpoint_step=-2: must be >= 0"):
    build.build(_config(workdir=str(tmp_path), checkpoint_step=-2))
  missing = str(tmp_path / "nowhere")
  with pytest.raises(run.RunError, match="autoguidance.workdir=.*nowhere.* holds no weak model"):
    weights.weak_params(build.build(_config(workdir=missing, weight=2.0)))
  assert not os.path.exists(missing)


def test_a_weak_model_of_another_network_guides_with_its_own_network(tmp_path):
  """A weak model of half the width (its workdir's config.json says so) guides by its own
  network's score: the sampling score is autoguidance of the two networks' scores, with the
  weak model's EMA parameters of its checkpoint."""
  weak_config = _config()
  weak_config.model.hidden = 16
  weak_exp = build.build(weak_config)
  run_train.train(weak_exp, str(tmp_path / "weak"))
  guided = build.build(_config(workdir=str(tmp_path / "weak"), weight=2.0))
  weak = weights.weak_params(guided)
  expected_weak = wd.load_state(weak_exp, str(tmp_path / "weak"), 10)[0].ema_params
  assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, weak, expected_weak))
  main = guided.init_state(jax.random.PRNGKey(3)).ema_params
  x = jax.random.normal(jax.random.PRNGKey(0), (32, 2)) * 2.0
  t = jnp.linspace(0.05, 1.0, 32)
  expected = cg.autoguidance(guided.score_fn(main), weak_exp.score_fn(weak), 2.0)(x, t)
  np.testing.assert_allclose(guided.sampling_score_fn(main, None, None, weak)(x, t), expected,
                             rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_autoguidance_settings_reach_the_sampler(tmp_path):
  """A weak model of the workdir's step-5 checkpoint guides --mode sample's DDIM at w = 2:
  its samples are those of the sampler on s_5 + 2 (s_10 - s_5) of the two checkpoints'
  EMA parameters, in a folder that names the weight; a checkpoint the weak workdir lacks
  is one line."""
  workdir = str(tmp_path / "run")
  exp = build.build(_config())
  run_train.train(exp, workdir)
  guided = build.build(_config(workdir=workdir, checkpoint_step=5, weight=2.0))
  out_dir = evaluate.sample(guided, workdir)
  assert os.path.basename(out_dir) == "ddim_autoguided2"
  with np.load(os.path.join(out_dir, "round_00000.npz")) as saved:
    samples = saved["samples"]
  main, _ = weights.restore_params(exp, workdir)
  weak = wd.load_state(exp, workdir, 5)[0].ema_params
  sampler = sampling.get_ddim_sampler(exp.sde, (16, 2), num_steps=5)
  expected, _ = jax.jit(lambda p, w, k: sampler(k, cg.autoguidance(
      exp.score_fn(p), exp.score_fn(w), 2.0)))(main, weak, jax.random.fold_in(
          jax.random.PRNGKey(exp.seed + 40_000), 0))
  unguided, _ = exp.sample(main, jax.random.fold_in(jax.random.PRNGKey(exp.seed + 40_000), 0))
  np.testing.assert_allclose(samples, expected, rtol=1e-4, atol=1e-4)
  assert float(np.abs(samples - np.asarray(unguided)).max()) > 1e-2
  with pytest.raises(run.RunError, match="the weak model of .*no readable checkpoint .*step 7"):
    weights.weak_params(build.build(_config(workdir=workdir, checkpoint_step=7, weight=2.0)))

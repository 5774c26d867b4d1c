"""Power EMA and post-hoc EMA (ema.py): the recursion has its stated weights, the widths
are EDM2's, the optimizer-state tracker equals the recursion, and a post-hoc
reconstruction equals the directly tracked average (exactly when its profile is in the
span of the stored ones, within the residual's bound otherwise)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ema
import run
from configs import default_toy
from infra import weights
from infra import workdir
from run import build
from run import evaluate
from run import train as run_train
from tests.test_training import shrink


def _power_ema(thetas, gamma):
  """The recursion hat_t = beta_t hat_{t-1} + (1 - beta_t) theta_t in float64."""
  average = np.zeros_like(thetas[0])
  for step, theta in enumerate(thetas):
    beta = ema.power_decay(float(step), gamma)
    average = beta * average + (1 - beta) * theta
  return average


def test_power_ema_has_the_stated_weights():
  thetas = np.random.default_rng(0).normal(size=(300, 5))
  for gamma in (0.0, 1.5, 6.94):
    weights = ema.power_weights(300, gamma)
    np.testing.assert_allclose(weights.sum(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(_power_ema(thetas, gamma), weights @ thetas, rtol=1e-10)
  # gamma = 0 is the running mean of every iterate.
  np.testing.assert_allclose(ema.power_weights(300, 0.0), np.full(300, 1 / 300), rtol=1e-12)


def test_sigma_rel_gamma_pairs_are_edm2s():
  """EDM2 (Karras et al., 2024, Sec. 3.1): sigma_rel 0.05 and 0.10 are gamma 16.97 and 6.94."""
  assert ema.gamma_of_sigma_rel(0.05) == pytest.approx(16.97, abs=0.01)
  assert ema.gamma_of_sigma_rel(0.10) == pytest.approx(6.94, abs=0.01)
  for sigma_rel in (0.01, 0.05, 0.2, 0.28):
    assert ema.sigma_rel_of_gamma(ema.gamma_of_sigma_rel(sigma_rel)) == pytest.approx(sigma_rel)
  # sigma_rel is the profile's standard deviation relative to t.
  gamma, t = 6.94, 100_000
  weights = ema.power_weights(t, gamma)
  tau = np.arange(1, t + 1)
  mean = weights @ tau
  assert np.sqrt(weights @ (tau - mean) ** 2) / t == pytest.approx(0.10, rel=1e-3)
  with pytest.raises(ValueError, match="sigma_rel=0.3 is outside"):
    ema.gamma_of_sigma_rel(0.3)


def test_tracker_in_the_optimizer_state_equals_the_recursion():
  """track_power_emas chained after SGD: its averages are sum_tau w_tau theta_tau of the
  iterates theta_1 .. theta_t (float32 arithmetic against the float64 weights)."""
  gammas = (ema.gamma_of_sigma_rel(0.05), ema.gamma_of_sigma_rel(0.2))
  optimizer = optax.chain(optax.sgd(0.1), ema.track_power_emas(gammas))
  params = {"w": jnp.ones(4)}
  state = optimizer.init(params)
  gradients = jax.random.normal(jax.random.PRNGKey(0), (200, 4))
  iterates = []
  for g in gradients:
    updates, state = optimizer.update({"w": g}, state, params)
    params = optax.apply_updates(params, updates)
    iterates.append(np.asarray(params["w"], np.float64))
  for gamma, average in zip(gammas, state[-1].averages):
    expected = ema.power_weights(200, gamma) @ np.array(iterates)
    np.testing.assert_allclose(average["w"], expected, rtol=2e-5)


def test_posthoc_reconstruction_of_other_widths_and_end_points():
  """A random-walk trajectory (dimension 50, 2000 steps) with the averages of widths 0.05
  and 0.10 stored every 100 steps. The reconstruction r of another average a differs
  from it by sum_tau (w_rec - w)_tau theta_tau, so |r - a| <= ||w_rec - w|| ||theta||
  (Cauchy-Schwarz), with the relative profile residual returned. Measured residuals:
  width 0.07 at step 2000: 2.5e-3; 0.15 at 1500: 1.0e-2 (an end point between two
  snapshots, 1550, leaves 0.25: evaluate at snapshot steps). The reconstructions are
  560x and 195x closer to their targets than the nearer stored average is."""
  thetas = np.cumsum(np.random.default_rng(1).normal(size=(2000, 50)), axis=0)
  stored_sigma_rels = (0.05, 0.10)
  stored = [(t, ema.gamma_of_sigma_rel(s)) for t in range(100, 2001, 100) for s in stored_sigma_rels]
  averages = [ema.power_weights(t, g, 2000) @ thetas for t, g in stored]
  # A stored profile is reconstructed exactly: one coefficient 1, the rest 0.
  coefficients, residual = ema.posthoc_coefficients(stored, stored[-1])
  np.testing.assert_allclose(coefficients, np.eye(len(stored))[-1], atol=1e-6)
  assert residual < 1e-9
  for sigma_rel, t, max_residual in ((0.07, 2000, 5e-3), (0.15, 1500, 2e-2)):
    gamma = ema.gamma_of_sigma_rel(sigma_rel)
    coefficients, residual = ema.posthoc_coefficients(stored, (t, gamma))
    target = ema.power_weights(t, gamma, 2000) @ thetas
    rebuilt = coefficients @ np.array(averages)
    bound = residual * np.linalg.norm(ema.power_weights(t, gamma)) * np.linalg.norm(thetas)
    assert residual < max_residual, (sigma_rel, residual)
    assert np.linalg.norm(rebuilt - target) <= bound, (sigma_rel, residual)
    nearest_stored = min(np.linalg.norm(a - target) for (ts, _), a in zip(stored, averages)
                         if ts == t)
    assert np.linalg.norm(rebuilt - target) < nearest_stored / 50, sigma_rel


@pytest.mark.slow        # ~16 s: keeps `make test` under 10 minutes
def test_training_run_stores_snapshots_and_rebuilds_its_own_ema(tmp_path):
  """A toy run whose train-state EMA is the power EMA of width 0.10, storing 0.05 and 0.10
  every 10 steps: the post-hoc EMA of width 0.10 at the last step (in the span) equals the
  train state's EMA to float32 rounding; eval / sample modes use a reconstructed width
  (in folders of their own); a step with no snapshot before it, and a config whose train
  state lacks the tracked averages, are one-line errors."""
  config = shrink(default_toy.get_default_configs(), n_iters=40)
  config.model.ema_sigma_rel = 0.10
  config.training.posthoc_ema.sigma_rels = (0.05, 0.10)
  config.training.posthoc_ema.snapshot_freq = 10
  exp = build.build(config)
  state, _ = run_train.train(exp, str(tmp_path))
  rebuilt, residual = workdir.posthoc_ema(str(tmp_path), 0.10, 40)
  assert residual < 1e-6
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                         rebuilt, jax.device_get(state.ema_params))
  other, _ = workdir.posthoc_ema(str(tmp_path), 0.2, 40)
  assert not np.allclose(jax.tree_util.tree_leaves(other)[0],
                         jax.tree_util.tree_leaves(rebuilt)[0])
  config.eval.posthoc_sigma_rel = 0.2
  exp = build.build(config)
  params = weights.evaluation_params(exp, str(tmp_path), state)
  jax.tree_util.tree_map(np.testing.assert_array_equal, params, other)
  out_dir = evaluate.sample(exp, str(tmp_path))
  assert out_dir.endswith("_ema0.2")
  assert np.isfinite(np.load(f"{out_dir}/round_00000.npz")["samples"]).all()
  with pytest.raises(run.RunError, match="no post-hoc EMA snapshot at or before step 5"):
    workdir.posthoc_ema(str(tmp_path), 0.2, 5)
  config.training.posthoc_ema.sigma_rels = ()
  with pytest.raises(run.WorkdirMismatch, match="holds another train state"):
    evaluate.sample(build.build(config), str(tmp_path))

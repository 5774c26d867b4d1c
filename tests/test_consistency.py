"""Consistency models: the parameterization's boundary condition holds exactly for every
process, the multistep consistency sampler samples the exact law when given the exact
consistency map, and distillation from the exact score approaches the closed-form ODE map
of Gaussian data (a wrong boundary does not)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import consistency
import densities
import sampling
import sde_lib
from models import mlp
from models import parameterizations

EPS = 1e-3
PROCESSES = [sde_lib.VPSDE(), sde_lib.VESDE(), sde_lib.subVPSDE(), sde_lib.EDMProcess(),
             sde_lib.RectifiedFlow()]


def _random_mlp(rng):
  """A small MLP and random weights everywhere (its output layer starts at 0), drawn by
  numpy on the host."""
  model = mlp.MLP(mlp.MLPConfig(hidden=16, depth=1))
  params = jax.tree_util.tree_map(lambda s: rng.normal(size=s.shape).astype(np.float32),
                                  jax.eval_shape(model.init, jax.random.PRNGKey(0),
                                                 jnp.zeros((1, 2)), jnp.zeros((1,))))
  return model, params


@pytest.mark.parametrize("sde", PROCESSES, ids=lambda s: type(s).__name__)
def test_the_boundary_condition_holds_exactly(sde):
  """c_skip(sigma_min) = 1 and c_out(sigma_min) = 0 exactly, so f(x, eps) = x for any
  network, while at larger t the network's output counts."""
  sigma_hat_min = jnp.exp(-sde.log_snr(jnp.full((1,), EPS)))
  c_skip, c_out, _ = parameterizations.consistency_coefficients(sigma_hat_min, sigma_hat_min, 0.5)
  np.testing.assert_array_equal(c_skip, 1.0)
  np.testing.assert_array_equal(c_out, 0.0)
  rng = np.random.default_rng(0)
  model, params = _random_mlp(rng)
  x = jnp.asarray(3.0 * rng.normal(size=(8, 2)), jnp.float32)

  @jax.jit
  def at_boundary_and_middle():
    f = parameterizations.get_consistency_fn(model.apply, params, sde, EPS)
    t = jnp.full((8,), 0.5 * sde.T)
    alpha_min = sde.marginal(jnp.full((8,), EPS))[0][:, None]
    c_skip = parameterizations.consistency_coefficients(jnp.exp(-sde.log_snr(t)),
                                                        sigma_hat_min, 0.5)[0][:, None]
    return f(x, jnp.full((8,), EPS)), f(x, t) - alpha_min * c_skip * x / sde.marginal(t)[0][:, None]

  at_boundary, network_part = at_boundary_and_middle()
  np.testing.assert_allclose(at_boundary, x, rtol=1e-6, atol=1e-6)
  assert float(jnp.abs(network_part).max()) > 1e-2


@pytest.mark.parametrize("sde", [sde_lib.VPSDE(), pytest.param(sde_lib.VESDE(),
                                                               marks=pytest.mark.slow)],
                         ids=["vp", "ve"])
def test_the_consistency_sampler_with_the_exact_map_samples_the_exact_law(sde):
  """Data N(0, 0.5^2): with the exact consistency map r(t) x (consistency.gaussian_ode_map)
  the 1-, 2- and 4-step samplers' output law, read off exactly as a linear function of the
  prior draw and the noises (densities.gaussian_sampler_variance), is p_eps's."""
  std = 0.5
  exact_map = lambda x, t: consistency.gaussian_ode_map(sde, std, t, EPS)[:, None] * x
  make = lambda sde, shape, n: sampling.get_consistency_sampler(sde, shape, num_steps=n, eps=EPS)
  score_fn = consistency.as_score_fn(exact_map, sde, EPS)
  alpha, sigma = sde.marginal(jnp.array([EPS]))
  for steps in (1, 2, 4):
    variance = jax.jit(lambda: densities.gaussian_sampler_variance(
        sde, make, steps, std, score_fn=score_fn))()
    np.testing.assert_allclose(float(variance), float(alpha[0] ** 2 * std**2 + sigma[0] ** 2),
                               rtol=1e-4)
  sampler = make(sde, (4, 1), 4)
  assert int(jax.jit(lambda k: sampler(k, score_fn)[1])(jax.random.PRNGKey(0))) == 4


@pytest.mark.parametrize("sde", PROCESSES, ids=lambda s: type(s).__name__)
def test_the_consistency_parameterization_is_the_score_of_the_consistency_function(sde):
  """parameterization "consistency" (what main.py's runs sample with) gives the score
  consistency.as_score_fn makes of network_consistency_fn's map (what their loss trains),
  for random weights; network_consistency_fn is get_consistency_fn of the network."""
  rng = np.random.default_rng(1)
  model, params = _random_mlp(rng)
  x = jnp.asarray(2.0 * rng.normal(size=(16, 2)), jnp.float32)
  t = jnp.linspace(0.01, sde.T, 16)
  eps, sigma_data = 2e-3, 0.7
  f = parameterizations.network_consistency_fn(model, sde, eps=eps, sigma_data=sigma_data)
  score = parameterizations.network_score_fn(model, sde, parameterization="consistency",
                                             sigma_data=sigma_data, consistency_eps=eps)
  expected = consistency.as_score_fn(f(params), sde, eps)(x, t)
  assert float(jnp.abs(expected).max()) > 1.0
  np.testing.assert_allclose(score(params)(x, t), expected, rtol=1e-4, atol=1e-4)
  np.testing.assert_array_equal(
      f(params)(x, t), parameterizations.get_consistency_fn(model.apply, params, sde, eps,
                                                            sigma_data)(x, t))


@pytest.mark.slow
def test_distillation_loss_vanishes_at_the_teacher_chain_and_not_elsewhere():
  """The distillation target on Gaussian data: the composed teacher steps
  (consistency.teacher_chain_map) are a fixed point of the loss (zero up to rounding); the
  exact ODE map, which the chain approximates, is not (Heun's error on the grid)."""
  sde, std = sde_lib.VPSDE(), 0.5
  times = jax.jit(lambda: sampling.time_grid(sde, 10, "edm", EPS))()
  chain = jax.jit(lambda: consistency.teacher_chain_map(sde, std, times))()

  def as_fn(factors):
    def f(x, t):   # piecewise by grid time: the factor of the grid point t equals
      index = jnp.argmin(jnp.abs(t[:, None] - times[None]), axis=1)
      return factors[index][:, None] * x
    return f

  data = densities.GaussianMixture(jnp.zeros((1, 1)), jnp.array([std]), jnp.ones(1))
  x0 = std * jax.random.normal(jax.random.PRNGKey(0), (4096, 1))
  loss = jax.jit(lambda factors: consistency.distillation_loss(
      as_fn(factors), as_fn(factors), sde, data.score_fn(sde), x0, jax.random.PRNGKey(1), times))
  assert float(loss(chain)) < 1e-9
  assert float(loss(consistency.gaussian_ode_map(sde, std, times, EPS))) > 1e-6
  with pytest.raises(ValueError, match="unknown teacher 'euler'; valid choices"):
    consistency.distillation_loss(as_fn(chain), as_fn(chain), sde, data.score_fn(sde), x0,
                                  jax.random.PRNGKey(1), times, teacher="euler")


@pytest.mark.slow
def test_distilled_map_approaches_the_closed_form_and_a_wrong_boundary_does_not():
  """experiments/consistency_models's setting (data N(0, 0.5^2), VP, MLP through the
  consistency parameterization, Heun teacher with the exact score on 40 EDM steps), 2000
  distillation steps, seed 0. Tolerance from that budget: the relative RMS error against the
  exact ODE map was 0.0253 +- 0.0045 over 3 seeds at 2000 steps (sd 0.008; floor 0.0084, the
  teacher chain's own error), so 0.055 is ~4 sd above the mean; the same run with
  c_skip(sigma_min) = 0.9 sat at 0.0856 (sd 0.005), 6 sd above the tolerance."""
  from experiments import consistency_models as cm
  key = jax.random.PRNGKey(0)
  good = cm.distill(key, (2000,))[0]
  error, error_to_chain = cm.map_errors(good, jax.random.PRNGKey(77))
  assert error < 0.055, error
  assert error_to_chain < 0.055, error_to_chain
  bad = cm.distill(key, (2000,), cm.wrong_boundary)[0]
  bad_error, _ = cm.map_errors(bad, jax.random.PRNGKey(77), cm.wrong_boundary)
  assert bad_error > 0.055, bad_error


@pytest.mark.parametrize("sde", [sde_lib.VPSDE(), sde_lib.VESDE()], ids=lambda s: type(s).__name__)
def test_consistency_training_has_distillations_expected_gradient_from_the_exact_score(sde):
  """Data N(0, 0.5^2), a consistency function linear in x (f = c_skip x + c_out (a + b c) x):
  given x_t, the training target's x' = alpha' x0 + sigma' z has mean the exact-score DDIM
  step, so consistency training's per-example gradient equals distillation's (DDIM teacher,
  exact score, the same step i and x_t) in expectation. The paired difference's mean is
  within 4 SE of zero, while the gradient itself is many SE from zero. (A second noise draw
  for x', instead of the same z, moves the mean by about 50 SE; t' one grid step too far, by
  about 60 SE: checked by hand.)"""
  std, n, num_steps = 0.5, 20_000, 8
  data = densities.GaussianMixture(jnp.zeros((1, 1)), jnp.array([std]), jnp.ones(1))
  apply = lambda p, x_in, c: (p[0] + p[1] * c)[:, None] * x_in
  f = lambda p: parameterizations.get_consistency_fn(apply, p, sde, EPS)
  params, target = jnp.array([0.3, -0.2]), jnp.array([0.1, 0.05])
  times = sampling.time_grid(sde, num_steps, "edm", EPS)

  def grads(key):
    x0 = data.sample(jax.random.fold_in(key, 1), 1)
    ct = lambda p: consistency.training_loss(f(p), f(target), sde, x0, key, num_steps)
    cd = lambda p: consistency.distillation_loss(f(p), f(target), sde, data.score_fn(sde), x0,
                                                 key, times, teacher="ddim")
    return jax.grad(ct)(params), jax.grad(cd)(params)

  g_ct, g_cd = jax.jit(jax.vmap(grads))(jax.random.split(jax.random.PRNGKey(0), n))
  difference = g_ct - g_cd
  se = difference.std(0) / np.sqrt(n)
  np.testing.assert_array_less(np.abs(difference.mean(0)), 4 * se)
  assert np.all(np.abs(g_cd.mean(0)) > 10 * g_cd.std(0) / np.sqrt(n))


def test_consistency_training_schedule_is_the_papers():
  """N(k) rises from s0 at k = 0 to s1 + 1 at k = K as the square root of k (Song et al.,
  2023, Appendix C); mu(k) = mu0 ^ (s0 / N(k))."""
  for k, expected in [(0, 2), (4000, 151), (1000, 76)]:     # sqrt(0.25 * (151^2 - 4) + 4) = 75.5...
    n, mu = consistency.training_schedule(jnp.array(k), 4000)
    assert int(n) == expected
    np.testing.assert_allclose(float(mu), 0.9 ** (2 / expected), rtol=1e-6)

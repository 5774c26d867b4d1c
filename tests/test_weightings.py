"""Every weighting and noise-level distribution is the same DSM objective: its value at
the exact score against quadrature in lambda, and draw-for-draw identity with sde_loss."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

import densities
import losses
import sde_lib
import weightings
from tests import stats

S, DIM = 0.5, 2              # data N(0, S^2 I_DIM)
GAUSSIAN = densities.GaussianMixture(jnp.zeros((1, DIM)), jnp.array([S]), jnp.ones(1))
SDES = {"vp": sde_lib.VPSDE(), "ve": sde_lib.VESDE(sigma_min=0.01, sigma_max=20.0),
        "edm": sde_lib.EDMProcess(sigma_max=20.0), "rf": sde_lib.RectifiedFlow()}
# Pairs whose estimator has a light tail. The others are unbiased too but heavy-tailed:
# the flat-in-lambda weightings ("likelihood", "sigmoid") under uniform t have weights
# ~ 1 / t (why Song et al. sample log-SNR uniformly), and a normal p in lambda under a
# weighting with wider support has weights ~ 1 / p.
CASES = ([("vp", w, "log_snr") for w in sorted(weightings.WEIGHTINGS)]
         + [("vp", w, "uniform") for w in ("edm", "min_snr", "sigma2")]
         + [(sde, "edm", "log_normal") for sde in ("vp", "ve", "edm", "rf")]
         + [("rf", "edm", "logit_normal"), ("rf", "flow_matching", "uniform")])


def exact_objective(sde, weighting, eps):
  """int w(lambda) E||sigma s* + z||^2 d lambda with, for N(0, S^2 I) data, the exact
  E||sigma s* + z||^2 = DIM sigma^2 J complement = DIM sigmoid(2 lambda + 2 log S), by
  Gauss-Legendre quadrature (400 nodes) over [lambda(T), lambda(eps)]."""
  lo, hi = float(sde.log_snr(jnp.asarray(sde.T))), float(sde.log_snr(jnp.asarray(eps)))
  nodes, quad = np.polynomial.legendre.leggauss(400)
  lam = lo + (nodes + 1) / 2 * (hi - lo)
  t = sde.t_of_log_snr(jnp.asarray(lam), eps)
  w = np.asarray(weightings.WEIGHTINGS[weighting](sde, jnp.asarray(lam), t,
                                                   weightings.Options(eps=eps)), np.float64)
  inner = DIM / (1.0 + np.exp(-(2 * lam + 2 * np.log(S))))
  return float(np.sum(quad * (hi - lo) / 2 * w * inner))


@pytest.mark.parametrize("sde_name, weighting, noise_levels", CASES)
def test_weighted_loss_at_the_exact_score_is_its_objective(sde_name, weighting, noise_levels):
  """At the exact score the expectation of the estimator w / p ||sigma s* + z||^2 is the
  objective whatever p is: a missing Jacobian |d lambda / dt|, a wrong truncation or a
  wrong density of p changes it. Tolerance: 4 standard errors, below 3% of the value."""
  sde, eps = SDES[sde_name], 1e-3
  x0 = GAUSSIAN.sample(jax.random.PRNGKey(0), 400_000)
  loss = functools.partial(losses.weighted_loss, weighting=weighting, noise_levels=noise_levels,
                           eps=eps, per_example=True)
  terms = np.asarray(jax.jit(lambda x: loss(GAUSSIAN.score_fn(sde), sde, x,
                                            jax.random.PRNGKey(1)))(x0), np.float64)
  expected = exact_objective(sde, weighting, eps)
  se = stats.standard_error(terms)
  assert abs(terms.mean() - expected) < stats.Z * se, (terms.mean(), expected, se)
  assert se < 0.03 * expected / stats.Z, (se, expected)     # 4 SE resolve a 3% error


@pytest.mark.parametrize("weighted, published", [
    (dict(), dict()),
    (dict(weighting="likelihood"), dict(likelihood_weighting=True)),
    (dict(weighting="likelihood", noise_levels="log_snr"),
     dict(likelihood_weighting=True, importance_sampling=True)),
])
def test_weighted_loss_reproduces_sde_loss_draw_for_draw(weighted, published):
  sde = SDES["vp"]
  x0 = GAUSSIAN.sample(jax.random.PRNGKey(2), 256)
  score_fn = lambda x, t: -0.3 * x          # not the exact score: any function will do
  new = losses.weighted_loss(score_fn, sde, x0, jax.random.PRNGKey(3), per_example=True,
                             **weighted)
  old = losses.sde_loss(score_fn, sde, x0, jax.random.PRNGKey(3), per_example=True, **published)
  np.testing.assert_allclose(new, old, rtol=1e-5)


def test_edm_weighting_with_log_normal_levels_is_edms_loss():
  """Karras et al. (2022): lambda(sigma) ||D(x_0 + sigma n) - x_0||^2 with ln sigma ~
  N(-1.2, 1.2^2), lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2, D = x +
  sigma^2 s; here on EDM's own process, whose t is sigma, times the mass of ln sigma's
  normal on the process's range [ln 1e-5, ln 20] (1 - 2.3e-4): the objective is the
  truncated one."""
  sde, key = SDES["edm"], jax.random.PRNGKey(4)
  x0 = GAUSSIAN.sample(jax.random.PRNGKey(5), 64)
  score_fn = lambda x, t: -x / (1.0 + t[:, None] ** 2)
  ours = losses.weighted_loss(score_fn, sde, x0, key, weighting="edm", noise_levels="log_normal",
                              per_example=True)
  k_t, k_z = jax.random.split(key)
  _, sigma, _ = weightings.sample_noise_levels("log_normal", k_t, 64, sde, weightings.Options())
  x = x0 + sigma[:, None] * jax.random.normal(k_z, x0.shape)
  denoised = x + sigma[:, None] ** 2 * score_fn(x, sigma)
  lam = (sigma**2 + 0.25) / (sigma * 0.5) ** 2
  mass = float(norm.cdf((np.log(20.0) + 1.2) / 1.2) - norm.cdf((np.log(1e-5) + 1.2) / 1.2))
  np.testing.assert_allclose(ours, mass * lam * jnp.sum((denoised - x0) ** 2, -1), rtol=2e-5)


def test_flow_matching_weighting_is_the_rectified_flow_velocity_loss():
  """||u_hat - (z - x_0)||^2 with u_hat = f x - g^2 s / 2, the velocity of any score
  function s, equals the "flow_matching" term draw for draw (uniform t)."""
  sde, key = SDES["rf"], jax.random.PRNGKey(6)
  x0 = GAUSSIAN.sample(jax.random.PRNGKey(7), 64)
  score_fn = lambda x, t: -x / (1.0 + t[:, None])
  ours = losses.weighted_loss(score_fn, sde, x0, key, weighting="flow_matching", per_example=True)
  k_t, k_z = jax.random.split(key)
  t = jax.random.uniform(k_t, (64,), minval=1e-5, maxval=sde.T)
  z = jax.random.normal(k_z, x0.shape)
  x = (1 - t[:, None]) * x0 + t[:, None] * z
  f, g = sde.coefficients(t)
  velocity = f[:, None] * x - 0.5 * (g**2)[:, None] * score_fn(x, t)
  np.testing.assert_allclose(ours, jnp.sum((velocity - (z - x0)) ** 2, -1), rtol=1e-3)


def test_unknown_weighting_or_distribution_names_the_choices():
  x0, sde = jnp.zeros((4, 2)), SDES["vp"]
  with pytest.raises(ValueError, match="unknown weighting 'snr'; valid choices"):
    losses.weighted_loss(lambda x, t: x, sde, x0, jax.random.PRNGKey(0), weighting="snr")
  with pytest.raises(ValueError, match="unknown noise-level distribution 'beta'"):
    losses.weighted_loss(lambda x, t: x, sde, x0, jax.random.PRNGKey(0), noise_levels="beta")

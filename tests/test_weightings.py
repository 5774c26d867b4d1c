"""Every weighting is its published loss, written here in the paper's own variables
(SNR, sigma, t) and compared draw for draw; every noise-level distribution estimates the
same objective: the estimator's value at the exact score against quadrature in lambda,
and draw-for-draw identity with sde_loss."""
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
  wrong density of p changes it. The quadrature takes w from weightings.py, so this checks
  the distributions p only; w itself is checked against the papers below. Tolerance: 4
  standard errors, below 3% of the value."""
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


# --- Every weighting against its published loss, in the paper's own variables. -------
# Each function returns the published per-example loss of one draw (t ~ U(eps, T), z ~
# N(0, I), x_t = alpha x_0 + sigma z) in this library's convention: no 1/2 factor, and the
# flat-in-lambda losses normalized as the g^2-weighted score loss averaged over t (the
# "likelihood" entry). They use only alpha(t), sigma(t), g(t) and autodiff, never
# weightings.py.

def _published_sigma2(sde, x0, t, z, s, o):
  """Song et al. (2021b) eq. 7 with lambda(t) = sigma(t)^2: sigma^2 ||s - grad log
  p_0t(x_t | x_0)||^2, grad log p_0t = -(x_t - alpha x_0) / sigma^2 (= Ho et al. (2020)
  eq. 14, ||eps - eps_theta||^2, with eps_theta = -sigma s)."""
  del o
  alpha, sigma = (v[:, None] for v in sde.marginal(t))
  x_t = alpha * x0 + sigma * z
  return jnp.sum(sigma**2 * (s + (x_t - alpha * x0) / sigma**2) ** 2, -1)


def _published_likelihood(sde, x0, t, z, s, o):
  """Song, Durkan, Murray & Ermon (2021), Theorem 1's weighting lambda(t) = g(t)^2 in the
  denoising form: g^2 ||s - grad log p_0t(x_t | x_0)||^2."""
  del o
  alpha, sigma = (v[:, None] for v in sde.marginal(t))
  g = sde.coefficients(t)[1][:, None]
  x_t = alpha * x0 + sigma * z
  return jnp.sum(g**2 * (s + (x_t - alpha * x0) / sigma**2) ** 2, -1)


def _published_min_snr(sde, x0, t, z, s, o):
  """Hang et al. (2023), Min-SNR-gamma: w_t = min(SNR(t), gamma) on the x_0-prediction
  loss ||x0_hat - x_0||^2, SNR = alpha^2 / sigma^2, x0_hat = (x_t + sigma^2 s) / alpha
  (Tweedie)."""
  alpha, sigma = (v[:, None] for v in sde.marginal(t))
  x_t = alpha * x0 + sigma * z
  snr = alpha**2 / sigma**2
  x0_hat = (x_t + sigma**2 * s) / alpha
  return jnp.sum(jnp.minimum(snr, o.min_snr_gamma) * (x0_hat - x0) ** 2, -1)


def _kingma_gao_log_snr(sde, t):
  """Kingma & Gao (2023)'s lambda_t = log SNR = log(alpha_t^2 / sigma_t^2) [B], and
  d lambda_t / dt [B] by autodiff."""
  log_snr = lambda t: jnp.log(sde.marginal(t)[0] ** 2 / sde.marginal(t)[1] ** 2)
  return jax.jvp(log_snr, (t,), (jnp.ones_like(t),))


def _published_sigmoid(sde, x0, t, z, s, o):
  """Kingma & Gao (2023): L_w = 1/2 E_t[w(lambda_t) (-d lambda / dt) ||eps_hat - eps||^2]
  with the sigmoid weighting w(lambda) = sigmoid(b - lambda), lambda = log SNR; w = 1 is
  their ELBO, g^2 ||s - grad log p_0t||^2 per draw in this convention (-d lambda / dt =
  g^2 / sigma^2), so the 1/2 goes."""
  sigma = sde.marginal(t)[1][:, None]
  lam, dlam_dt = _kingma_gao_log_snr(sde, t)
  eps_hat = -sigma * s
  return jax.nn.sigmoid(o.sigmoid_bias - lam) * -dlam_dt * jnp.sum((eps_hat - z) ** 2, -1)


PUBLISHED = {"sigma2": _published_sigma2, "likelihood": _published_likelihood,
             "min_snr": _published_min_snr, "sigmoid": _published_sigmoid}


@pytest.mark.parametrize("sde_name", sorted(SDES))
@pytest.mark.parametrize("weighting", sorted(PUBLISHED))
def test_weighting_is_its_published_loss(weighting, sde_name):
  """Draw for draw under uniform t, for a score function that is not the exact score and
  non-default constants (gamma 2, b 1.5): a weighting with the wrong units of lambda,
  min(1, gamma SNR) for min(1, gamma / SNR) or a lost Jacobian differs by a factor."""
  sde, key, eps = SDES[sde_name], jax.random.PRNGKey(8), 1e-3
  o = weightings.Options(eps=eps, min_snr_gamma=2.0, sigmoid_bias=1.5)
  x0 = GAUSSIAN.sample(jax.random.PRNGKey(9), 256)
  score_fn = lambda x, t: -x / (0.5 + t[:, None])
  ours = losses.weighted_loss(score_fn, sde, x0, key, weighting=weighting, eps=eps,
                              min_snr_gamma=o.min_snr_gamma, sigmoid_bias=o.sigmoid_bias,
                              per_example=True)
  k_t, k_z = jax.random.split(key)
  t = jax.random.uniform(k_t, (256,), minval=eps, maxval=sde.T)
  z = jax.random.normal(k_z, x0.shape)
  alpha, sigma = sde.marginal(t)
  s = score_fn(alpha[:, None] * x0 + sigma[:, None] * z, t)
  np.testing.assert_allclose(ours, PUBLISHED[weighting](sde, x0, t, z, s, o), rtol=2e-4)


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

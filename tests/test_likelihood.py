"""Probability-flow likelihoods against the exact log-density of a 2-D mixture."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import datasets
import likelihood
import sde_lib
from tests import stats
from tests.test_sampling import counting

GMM = datasets.gaussian_mixture()
# Configurations whose prior matches p_T, and whose p_eps matches p_0, to well under
# 0.01 nats on this data, so that what is left is the likelihood computation itself.
# With the published constants the model's density is not p_0 to that accuracy: the
# VP prior (beta_max = 20) misses p_T by up to 0.011 nats; the VE prior N(0, 50^2)
# ignores the data mean (0.2, 0.5) (~0.03 nats), and sigma_min = 0.01 smooths p_0.
SDES = {"vp": sde_lib.VPSDE(beta_max=25.0), "subvp": sde_lib.subVPSDE(beta_max=25.0),
        "ve": sde_lib.VESDE(sigma_min=1e-3, sigma_max=300.0),
        "edm": sde_lib.EDMProcess(sigma_max=300.0), "rf": sde_lib.RectifiedFlow()}
# Rectified flow's drift is stiff near T (f = -1 / (1 - t)): the solver's default rtol
# 1e-5 leaves errors of up to 0.010 nats there (0.0014 at 1e-7).
SOLVER_TOLERANCE = {"rf": 1e-7}


@pytest.mark.parametrize("sde_name", sorted(SDES))
def test_exact_divergence_gives_the_true_log_density(sde_name):
  sde = SDES[sde_name]
  x = GMM.sample(jax.random.PRNGKey(0), 200)
  tol = SOLVER_TOLERANCE.get(sde_name, 1e-5)
  loglik_fn = jax.jit(likelihood.get_likelihood_fn(sde, "exact", rtol=tol, atol=tol),
                      static_argnums=1)
  logp, z, _ = loglik_fn(jax.random.PRNGKey(1), GMM.score_fn(sde), x)
  assert float(jnp.max(jnp.abs(logp - GMM.log_prob(x)))) < 0.01
  # z is the data transported to T, distributed as p_T ~ the prior.
  assert z.shape == x.shape and abs(float(jnp.mean(z**2)) - sde.prior_std**2) < 0.3 * sde.prior_std**2


@pytest.mark.parametrize("hutchinson_type", ["rademacher", "gaussian"])
def test_hutchinson_log_likelihood_is_unbiased(hutchinson_type):
  sde = SDES["vp"]
  n_points, n_probes = 4, 256
  points = GMM.sample(jax.random.PRNGKey(2), n_points)
  exact, _, _ = likelihood.get_likelihood_fn(sde, "exact")(None, GMM.score_fn(sde), points)
  replicas = jnp.repeat(points, n_probes, axis=0)   # one probe per replica
  estimate, _, _ = jax.jit(likelihood.get_likelihood_fn(sde, hutchinson_type), static_argnums=1)(
      jax.random.PRNGKey(3), GMM.score_fn(sde), replicas)
  estimate = np.asarray(estimate).reshape(n_points, n_probes)
  for i in range(n_points):
    stats.assert_mean_close(estimate[i], float(exact[i]), what=f"point {i}")
    assert np.std(estimate[i]) > 1e-3


@pytest.mark.parametrize("hutchinson_type", likelihood.HUTCHINSON_TYPES)
def test_nfe_is_the_number_of_vector_field_evaluations(hutchinson_type):
  sde = sde_lib.VPSDE()
  score_fn, count = counting(GMM.score_fn(sde))
  x = GMM.sample(jax.random.PRNGKey(4), 8)
  _, _, nfe = likelihood.get_likelihood_fn(sde, hutchinson_type)(jax.random.PRNGKey(5), score_fn, x)
  jax.effects_barrier()
  # One score call per evaluation with a Hutchinson probe (a JVP); the exact trace
  # adds D = 2 JVPs to the drift's own call.
  calls_per_evaluation = 1 + 2 if hutchinson_type == "exact" else 1
  assert int(nfe) > 0 and count[0] == int(nfe) * calls_per_evaluation


def test_bits_per_dim_of_the_uniform_model_is_n_bits():
  """A model uniform on [-1, 1)^D (log p_y = -D log 2) with the centering scaler
  y = 2u - 1 is uniform over the 256 levels: exactly 8 bits/dim."""
  dim = 3 * 4 * 4
  logp_y = jnp.full((5,), -dim * math.log(2.0))
  np.testing.assert_allclose(
      likelihood.bits_per_dim(logp_y, dim, scaler_log_det=dim * math.log(2.0)), 8.0, rtol=1e-6)
  u = likelihood.dequantize(jax.random.PRNGKey(0), jnp.array([0, 255, 17], jnp.uint8))
  assert float(u[0]) >= 0.0 and float(u[1]) < 1.0 and 17 / 256 <= float(u[2]) < 18 / 256


def test_unknown_hutchinson_type_lists_the_valid_choices():
  with pytest.raises(ValueError, match="'sobol'.*rademacher"):
    likelihood.get_likelihood_fn(sde_lib.VPSDE(), "sobol")


def _prior_mismatch_given_x(sde, x, key, draws=2048):
  """E[log p_T(x_T) - log prior(x_T) | x_0 = x] per point [B], by Monte Carlo, and its SE."""
  a_T, v_T = sde.transition(jnp.asarray(sde.T), jnp.zeros(()))
  x_T = a_T * x[None] + jnp.sqrt(v_T) * jax.random.normal(key, (draws,) + x.shape)
  flat = x_T.reshape(-1, x.shape[-1])
  ratio = (GMM.log_prob_t(sde, flat, jnp.full((flat.shape[0],), sde.T))
           - sde.prior_logp(flat)).reshape(draws, -1)
  return np.asarray(ratio.mean(0)), np.asarray(ratio.std(0) / np.sqrt(draws))


@pytest.mark.parametrize("sde_name", ["vp", pytest.param("ve", marks=pytest.mark.slow),
                                      pytest.param("rf", marks=pytest.mark.slow)])
def test_sde_bound_at_the_exact_score_is_the_nll_plus_the_prior_mismatch(sde_name):
  """Song et al. (2021b, Thm. 2) at the exact score: the reverse SDE's path law is the
  forward one's but for the prior, so the bound is -log p_0(x) + E[log p_T / prior | x]
  at every point. A wrong sign of the divergence term (VP, rectified flow) or a missing
  factor 2 on the cross term fails it (checked by hand)."""
  sde = SDES[sde_name]
  n = 64
  x = GMM.sample(jax.random.PRNGKey(0), n)
  bound_fn = jax.jit(likelihood.get_sde_bound_fn(sde, num_draws=2048), static_argnums=1)
  bound, bound_se = bound_fn(jax.random.PRNGKey(1), GMM.score_fn(sde), x)
  mismatch, mismatch_se = _prior_mismatch_given_x(sde, x, jax.random.PRNGKey(2))
  nll = -np.asarray(GMM.log_prob_t(sde, x, jnp.zeros((n,))))
  residual = np.asarray(bound) - mismatch - nll
  se = np.sqrt(np.sum(np.asarray(bound_se) ** 2 + mismatch_se**2)) / n
  assert abs(residual.mean()) < stats.Z * se, (residual.mean(), se)
  assert np.all(np.abs(residual) < 5 * np.hypot(bound_se, mismatch_se)), residual

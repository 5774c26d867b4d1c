"""Gaussian-mixture oracle: exact scores equal autodiff, densities normalize, limits hold."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import datasets
import densities
from tests import stats
from tests.test_sde_lib import ALL_SDES

MIXTURE_1D = densities.GaussianMixture(means=jnp.array([[-2.0], [1.0], [3.0]]),
                                       stds=jnp.array([0.3, 0.8, 0.5]),
                                       weights=jnp.array([0.2, 0.5, 0.3]))


@pytest.mark.parametrize("name", sorted(ALL_SDES))
def test_score_fn_is_the_gradient_of_log_prob_t(name):
  sde = ALL_SDES[name]
  gmm = datasets.gaussian_mixture()
  x = 2.0 * jax.random.normal(jax.random.PRNGKey(0), (16, 2))
  t = jnp.linspace(0.0, 1.0, 16) * sde.T
  grad = jax.grad(lambda x: jnp.sum(gmm.log_prob_t(sde, x, t)))(x)
  np.testing.assert_allclose(gmm.score_fn(sde)(x, t), grad, rtol=1e-4, atol=1e-5)


def test_data_score_is_the_gradient_of_log_prob():
  gmm = datasets.gaussian_mixture()
  x = 2.0 * jax.random.normal(jax.random.PRNGKey(1), (16, 2))
  grad = jax.grad(lambda x: jnp.sum(gmm.log_prob(x)))(x)
  np.testing.assert_allclose(gmm.score(x), grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(ALL_SDES))
def test_log_prob_t_integrates_to_one(name):
  sde = ALL_SDES[name]
  for frac in (0.0, 0.2, 1.0):
    _, sigma = sde.marginal(jnp.asarray(frac * sde.T))
    half_width = 6.0 + 8.0 * float(sigma)
    grid = np.linspace(-half_width, half_width, 40_001)
    logp = MIXTURE_1D.log_prob_t(sde, jnp.asarray(grid[:, None]), jnp.full(grid.shape, frac * sde.T))
    assert abs(np.trapezoid(np.exp(np.asarray(logp, np.float64)), grid) - 1.0) < 1e-4


@pytest.mark.parametrize("name", ["vp", "subvp", "ou_T2", "edm", "rf"])
def test_log_prob_t_at_time_zero_is_the_data_density(name):
  sde = ALL_SDES[name]
  x = jax.random.normal(jax.random.PRNGKey(2), (32, 1)) * 2
  np.testing.assert_allclose(MIXTURE_1D.log_prob_t(sde, x, jnp.zeros(32)),
                             MIXTURE_1D.log_prob(x), rtol=1e-5, atol=1e-5)


def test_ve_log_prob_t_at_time_zero_is_the_data_smoothed_by_sigma_min():
  sde = ALL_SDES["ve"]
  x = jax.random.normal(jax.random.PRNGKey(3), (32, 1)) * 2
  np.testing.assert_allclose(MIXTURE_1D.log_prob_t(sde, x, jnp.zeros(32)),
                             MIXTURE_1D.smoothed(sde.sigma_min).log_prob(x), rtol=1e-5, atol=1e-5)


def test_samples_follow_the_mixture():
  gmm = datasets.gaussian_mixture()
  x = np.asarray(gmm.sample(jax.random.PRNGKey(4), 50_000))
  nearest = np.argmin(((x[:, None] - np.asarray(gmm.means)[None]) ** 2).sum(-1), axis=1)
  for k, w in enumerate(np.asarray(gmm.weights)):
    stats.assert_mean_close(nearest == k, w, what=f"weight of component {k}")
    stats.assert_mean_close(x[nearest == k, 0], float(gmm.means[k, 0]), what=f"mean {k}")


def test_bad_shapes_fail_clearly():
  with pytest.raises(ValueError, match="means \\[K, D\\]"):
    densities.GaussianMixture(jnp.zeros((2, 2)), jnp.ones(3), jnp.ones(3))

"""SDE library against exact answers: Monte-Carlo forward simulation, prior densities,
exact transitions of the discretizations, and the reverse-SDE algebra."""
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as scipy_stats

import datasets
import densities
import sampling
import sde_lib
from tests import stats


@dataclasses.dataclass(frozen=True)
class OrnsteinUhlenbeckSDE(sde_lib.SDE):
  """A new linear SDE in a few lines: dx = -theta x dt + scale dW on [0, T]."""

  theta: float = 1.5
  scale: float = 0.7
  N: int = 100
  T: float = 2.0

  def coefficients(self, t):
    return -self.theta * jnp.ones_like(t), self.scale * jnp.ones_like(t)

  def marginal(self, t):
    var = self.scale**2 * -jnp.expm1(-2 * self.theta * t) / (2 * self.theta)
    return jnp.exp(-self.theta * t), jnp.sqrt(var)


ALL_SDES = {
    "ve": sde_lib.VESDE(sigma_min=0.01, sigma_max=10.0, N=100),
    "vp": sde_lib.VPSDE(beta_min=0.1, beta_max=20.0, N=100),
    "subvp": sde_lib.subVPSDE(beta_min=0.1, beta_max=20.0, N=100),
    "vp_T2": sde_lib.VPSDE(beta_min=0.1, beta_max=8.0, N=50, T=2.0),
    "ve_T3": sde_lib.VESDE(sigma_min=0.05, sigma_max=5.0, N=50, T=3.0),
    "ou_T2": OrnsteinUhlenbeckSDE(),
    "edm": sde_lib.EDMProcess(sigma_max=10.0, N=100),
    "rf": sde_lib.RectifiedFlow(N=100),
}


def simulate_forward(sde, x0, key, t_end, n_steps):
  """Euler-Maruyama paths of the forward SDE from x(0) ~ N(alpha(0) x0, sigma(0)^2)."""
  k0, k_path = jax.random.split(key)
  alpha0, sigma0 = sde.marginal(jnp.zeros(()))
  x = alpha0 * x0 + sigma0 * jax.random.normal(k0, x0.shape)
  dt = t_end / n_steps

  def step(x, inputs):
    k, i = inputs
    t = jnp.full((x.shape[0],), i * dt)
    drift, g = sde.sde(x, t)
    return x + drift * dt + g[:, None] * math.sqrt(dt) * jax.random.normal(k, x.shape), None

  keys = jax.random.split(k_path, n_steps)
  x, _ = jax.lax.scan(step, x, (keys, jnp.arange(n_steps)))
  return x


@pytest.mark.parametrize("name", sorted(ALL_SDES))
def test_marginal_matches_forward_simulation(name):
  sde = ALL_SDES[name]
  n_paths, x0_value = 20_000, 1.5
  x0 = jnp.full((n_paths, 1), x0_value)
  # Rectified flow's f = -1 / (1 - t) is stiff near T = 0.999: Euler-Maruyama with
  # f dt = -0.25 there has its own stationary variance (1.14, not 1); stop at 0.9 T.
  for frac in (0.3, 0.9 if name == "rf" else 1.0):
    t_end = frac * sde.T
    x = np.asarray(jax.jit(simulate_forward, static_argnums=(0, 3, 4))(
        sde, x0, jax.random.PRNGKey(1), t_end, 4000))[:, 0]
    mean, std = sde.marginal_prob(x0[:1], jnp.full((1,), t_end))
    mean, std = float(mean[0, 0]), float(std[0])
    stats.assert_mean_close(x, mean, what=f"{name} mean at t={t_end}")
    stats.assert_mean_close((x - mean) ** 2, std**2, what=f"{name} variance at t={t_end}")


@pytest.mark.parametrize("name", sorted(ALL_SDES))
def test_prior_logp_is_the_prior_density(name):
  sde = ALL_SDES[name]
  z = sde.prior_sampling(jax.random.PRNGKey(0), (5, 3, 2))
  expected = scipy_stats.norm.logpdf(np.asarray(z), scale=sde.prior_std).reshape(5, -1).sum(-1)
  np.testing.assert_allclose(sde.prior_logp(z), expected, rtol=1e-5)
  samples = np.asarray(sde.prior_sampling(jax.random.PRNGKey(1), (40_000, 1)))
  stats.assert_mean_close(samples**2, sde.prior_std**2, what="prior variance")


@pytest.mark.parametrize("sde", [sde_lib.VESDE(sigma_min=0.01, sigma_max=50.0), ALL_SDES["vp"],
                                 ALL_SDES["subvp"], ALL_SDES["vp_T2"]])
def test_prior_approximates_the_marginal_at_T(sde):
  alpha_T, sigma_T = sde.marginal(jnp.asarray(sde.T))
  assert abs(float(sigma_T) / sde.prior_std - 1.0) < 1e-2
  assert float(alpha_T) * 3.0 < 0.1 * sde.prior_std   # data of scale 3 is forgotten


@pytest.mark.parametrize("name", sorted(ALL_SDES))
def test_discretize_converges_to_the_exact_transition(name):
  """x_t = (1 + f_d / x) x_{t-dt} + G_d z must match the exact kernel N(a x, v) to
  first order: the errors shrink like dt^2 per step (ratio ~100 for dt / 10)."""
  sde = ALL_SDES[name]
  t = jnp.array([0.4 * sde.T, 0.9 * sde.T])
  x = jnp.ones((2, 1))
  errors = []
  for dt in (1e-2 * sde.T, 1e-3 * sde.T):
    f, G = sde.discretize(x, t, dt)
    a, v = sde.transition(t, t - dt)
    errors.append(float(jnp.max(jnp.abs(1.0 + f[:, 0] - a) + jnp.abs(G**2 - v))))
  assert errors[1] < errors[0] / 30 or errors[1] < 1e-6, errors


def test_ve_discretize_is_the_smld_step():
  sde = ALL_SDES["ve"]
  t = jnp.array([0.5, 1.0])
  f, G = sde.discretize(jnp.ones((2, 3)), t)
  prev = sde.sigma(t - 1.0 / sde.N)
  np.testing.assert_allclose(G**2, sde.sigma(t) ** 2 - prev**2, rtol=1e-6)
  assert float(jnp.max(jnp.abs(f))) == 0.0


def test_vp_discretize_is_the_ddpm_step():
  sde = sde_lib.VPSDE(beta_min=0.1, beta_max=20.0, N=1000)
  index = np.array([0, 499, 999])
  t = jnp.asarray(index / 999)                     # the grid t_i = i T / (N - 1)
  x = jnp.ones((3, 2))
  f, G = sde.discretize(x, t)
  beta_i = np.linspace(0.1 / 1000, 20.0 / 1000, 1000)[index]   # DDPM's discrete betas
  np.testing.assert_allclose(G**2, beta_i, rtol=1e-5)
  np.testing.assert_allclose(f[:, 0], np.sqrt(1 - beta_i) - 1, rtol=1e-5)


def test_edm_discretize_has_the_exact_variance():
  sde = ALL_SDES["edm"]
  t = jnp.array([0.5, 10.0])
  f, G = sde.discretize(jnp.ones((2, 3)), t, 0.1)
  np.testing.assert_allclose(G**2, t**2 - (t - 0.1) ** 2, rtol=1e-6)
  assert float(jnp.max(jnp.abs(f))) == 0.0


def test_rectified_flow_probability_flow_is_the_flow_matching_velocity():
  """For x_0 ~ N(m, s^2), x_t = (1 - t) x_0 + t z: the velocity E[z - x_0 | x_t = x] by
  Gaussian conditioning, -m + (t - (1 - t) s^2) (x - (1 - t) m) / ((1 - t)^2 s^2 + t^2),
  equals the probability-flow drift f x - g^2 s / 2 with the exact score."""
  sde, m, s = ALL_SDES["rf"], 1.5, 0.4
  gaussian = densities.GaussianMixture(jnp.array([[m]]), jnp.array([s]), jnp.ones(1))
  t = jnp.array([0.05, 0.3, 0.6, 0.9, 0.99])
  x = jnp.array([[-1.0], [0.3], [2.0], [0.7], [-0.4]])
  drift, _ = sde.reverse(gaussian.score_fn(sde), probability_flow=True).sde(x, t)
  tt = t[:, None]
  velocity = -m + (tt - (1 - tt) * s**2) * (x - (1 - tt) * m) / ((1 - tt) ** 2 * s**2 + tt**2)
  np.testing.assert_allclose(drift, velocity, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(ALL_SDES))
def test_reverse_sde_and_probability_flow(name):
  sde = ALL_SDES[name]
  score_fn = datasets.gaussian_mixture().score_fn(sde)
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 2))
  t = jnp.linspace(0.1, 0.9, 4) * sde.T
  drift, g = sde.sde(x, t)
  s = score_fn(x, t)
  r_drift, r_g = sde.reverse(score_fn).sde(x, t)
  np.testing.assert_allclose(r_drift, drift - (g**2)[:, None] * s, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(r_g, g)
  ode_drift, ode_g = sde.reverse(score_fn, probability_flow=True).sde(x, t)
  np.testing.assert_allclose(ode_drift, drift - 0.5 * (g**2)[:, None] * s, rtol=1e-5, atol=1e-5)
  assert float(jnp.max(jnp.abs(ode_g))) == 0.0
  f, G = sde.discretize(x, t)
  r_f, r_G = sde.reverse(score_fn).discretize(x, t)
  np.testing.assert_allclose(r_f, f - (G**2)[:, None] * s, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(r_G, G)


@pytest.mark.parametrize("name", sorted(ALL_SDES))
def test_t_of_log_snr_inverts_log_snr(name):
  sde = ALL_SDES[name]
  t = jnp.linspace(0.01, 1.0, 7) * sde.T
  np.testing.assert_allclose(sde.t_of_log_snr(sde.log_snr(t)), t, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("make, bad", [
    (lambda: sde_lib.VESDE(sigma_min=1.0, sigma_max=0.5), "sigma_min=1.0"),
    (lambda: sde_lib.VESDE(N=0), "N=0"),
    (lambda: sde_lib.VPSDE(beta_min=-0.1), "beta_min=-0.1"),
    (lambda: sde_lib.subVPSDE(beta_min=2.0, beta_max=1.0), "beta_min=2.0"),
    (lambda: sde_lib.VPSDE(T=0.0), "T=0.0"),
    (lambda: sde_lib.get_sde("vesd"), "vesde"),
    (lambda: sde_lib.RectifiedFlow(T=1.0), "T=1.0"),
    (lambda: sde_lib.EDMProcess(sigma_max=0.0), "sigma_max=0.0"),
    (lambda: sde_lib.DDPMChain(beta_max=20.0, N=10), "beta_max=20.0, N=10"),
    (lambda: sde_lib.DDPMChain(N=1), "N=1"),
])
def test_invalid_arguments_fail_with_the_bad_value(make, bad):
  with pytest.raises(ValueError, match=bad):
    make()


# --- The DDPM chain (score_sde's discrete VP). ----------------------------------------

def _chain_closed_form(n_levels=1000, beta_min=0.1, beta_max=20.0):
  """float64 beta_n and abar_n = prod_{k <= n} (1 - beta_k), n = 0..N (level 0: the data),
  with score_sde's betas linspace(beta_min / N, beta_max / N, N)."""
  betas = np.concatenate([[0.0], np.linspace(beta_min / n_levels, beta_max / n_levels,
                                             n_levels)])
  return betas, np.cumprod(1.0 - betas)


def test_ddpm_chain_marginal_is_the_chains_at_score_sdes_level():
  """Level n(t) = int(t (N - 1)) + 1 (score_sde's std lookup sqrt_1m_alphas_cumprod[int(t
  (N - 1))], 0-based), 0 at t = 0; the marginal there is (sqrt(abar_n), sqrt(1 - abar_n)),
  at every level."""
  chain = sde_lib.DDPMChain()
  _, abar = _chain_closed_form()
  t = np.array([0.0, 1e-4, 0.01, 0.2, 0.5, 0.9, 1 - 1e-4, 1.0])
  np.testing.assert_array_equal(chain.level(jnp.asarray(t, jnp.float32)),
                                [0, 1, 10, 200, 500, 900, 999, 1000])
  levels = np.arange(1001)
  t = np.concatenate([[0.0], (levels[1:-1] - 0.5) / 999, [1.0]])   # inside each level's cell
  np.testing.assert_array_equal(chain.level(jnp.asarray(t, jnp.float32)), levels)
  alpha, sigma = chain.marginal(jnp.asarray(t, jnp.float32))
  np.testing.assert_allclose(alpha, np.sqrt(abar), rtol=1e-6)
  np.testing.assert_allclose(sigma, np.sqrt(1.0 - abar), rtol=1e-6)
  assert float(sigma[1]) == pytest.approx(0.01, rel=1e-6)   # sqrt(beta_1), not VP's sigma(0) = 0


def test_ddpm_chain_steps_on_score_sdes_grid_are_ddpms():
  """On the PC sampler's grid [linspace(T, eps, N), 0] the levels are N, ..., 1, 0, and
  each step's exact kernel (transition, discretize) is DDPM's x_n = sqrt(1 - beta_n)
  x_{n-1} + sqrt(beta_n) z."""
  chain = sde_lib.DDPMChain()
  betas, _ = _chain_closed_form()
  times = jnp.concatenate([sampling.time_grid(chain, 999, "uniform", 1e-3), jnp.zeros(1)])
  np.testing.assert_array_equal(chain.level(times), np.arange(1000, -1, -1))
  n = np.arange(1000, 0, -1)
  a, v = chain.transition(times[:-1], times[1:])
  np.testing.assert_allclose(a, np.sqrt(1.0 - betas[n]), rtol=1e-6)
  np.testing.assert_allclose(v, betas[n], rtol=1e-4)
  f, G = chain.discretize(jnp.ones((1000, 2)), times[:-1], times[:-1] - times[1:])
  np.testing.assert_allclose(f[:, 0], np.sqrt(1.0 - betas[n]) - 1.0, rtol=1e-4, atol=1e-8)
  np.testing.assert_allclose(G**2, betas[n], rtol=1e-4)


@pytest.mark.parametrize("predictor, posterior", [("ancestral_sampling", False),
                                                  ("ancestral_transition", False),
                                                  ("ancestral_posterior", True)])
def test_ddpm_chain_ancestral_steps_are_ho_et_als(predictor, posterior):
  """From level n to n - 1: mean (x + beta_n s(x, t)) / sqrt(1 - beta_n), and noise of
  variance beta_n (Ho et al.'s sigma_t^2 = beta_t, score_sde's ancestral sampling on VP) or
  beta-tilde_n = beta_n (1 - abar_{n-1}) / (1 - abar_n) (the posterior's; 0 at n = 1)."""
  chain = sde_lib.DDPMChain()
  betas, abar = _chain_closed_form()
  levels = np.array([1000, 700, 2, 1])
  t = jnp.asarray((levels - 0.5) / 999, jnp.float32).at[0].set(1.0)
  t_next = jnp.asarray((levels - 1.5) / 999, jnp.float32).at[-1].set(0.0)
  np.testing.assert_array_equal(chain.level(t_next), levels - 1)
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 3))
  score_fn = lambda x, t: -0.7 * x + t[:, None]
  key = jax.random.PRNGKey(1)
  x_new, x_mean = sampling.PREDICTORS[predictor](chain.reverse(score_fn), key, x, t, t_next)
  beta = betas[levels][:, None]
  np.testing.assert_allclose(x_mean, (x + beta * score_fn(x, t)) / np.sqrt(1.0 - beta),
                             rtol=1e-5, atol=1e-6)
  variance = beta * (1.0 - abar[levels - 1][:, None]) / (1.0 - abar[levels][:, None]) \
      if posterior else beta
  z = jax.random.normal(key, x.shape)
  np.testing.assert_allclose(x_new - x_mean, np.sqrt(variance) * z, rtol=1e-3, atol=1e-6)

"""Every sampler, driven by the exact score of a 2-D mixture with unequal weights,
must reproduce that mixture within Monte-Carlo error; NFE is counted by a callback."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import datasets
import densities
import evaluation
import sampling
import sde_lib
from tests import stats
from tests.test_sde_lib import OrnsteinUhlenbeckSDE

GMM = datasets.gaussian_mixture()
N_SAMPLES = 4000
SDES = {"vp": sde_lib.VPSDE(N=500), "subvp": sde_lib.subVPSDE(N=500),
        "ve": sde_lib.VESDE(sigma_min=0.01, sigma_max=20.0, N=500),
        "edm": sde_lib.EDMProcess(sigma_max=20.0, N=500), "rf": sde_lib.RectifiedFlow(N=500)}

SAMPLERS = {
    "pc_reverse_diffusion_langevin": functools.partial(sampling.get_pc_sampler),
    "pc_euler_maruyama": functools.partial(sampling.get_pc_sampler, predictor="euler_maruyama",
                                           corrector="none"),
    "pc_ancestral": functools.partial(sampling.get_pc_sampler, predictor="ancestral_sampling",
                                      corrector="none"),
    "pc_probability_flow": functools.partial(sampling.get_pc_sampler, corrector="none",
                                             probability_flow=True),
    "ald_only": functools.partial(sampling.get_pc_sampler, predictor="none", corrector="ald",
                                  snr=0.3, n_steps=5),
    "ode": sampling.get_ode_sampler,
    # Few-step samplers at step counts where their discretization bias is below the
    # Monte-Carlo error of 4000 samples (at fewer steps it is visible: see experiments/).
    "ddim_100": functools.partial(sampling.get_ddim_sampler, num_steps=100),
    "ddim_eta1_100": functools.partial(sampling.get_ddim_sampler, num_steps=100, eta=1.0),
    "edm_heun_36": functools.partial(sampling.get_edm_sampler, num_steps=36),
    "edm_heun_churn": functools.partial(sampling.get_edm_sampler, num_steps=40, s_churn=20.0),
    "dpm_solver_2m_40": functools.partial(sampling.get_dpm_solver_sampler, num_steps=40),
    "dpm_solver_3m_40": functools.partial(sampling.get_dpm_solver_3m_sampler, num_steps=40),
    "dpm_solver_2s_20": functools.partial(sampling.get_dpm_solver_2s_sampler, num_steps=20),
    "dpm_solver_2m_sde_40": functools.partial(sampling.get_dpm_solver_sde_sampler, num_steps=40),
    # EDM's time is sigma itself, in [0, 20] here: 100 steps uniform in it are too coarse
    # at small sigma (measured MMD^2 4x the null), so DDIM runs on EDM's rho grid there.
    "ddim_100_edm_grid": functools.partial(sampling.get_ddim_sampler, num_steps=100, grid="edm"),
    "ddim_eta1_100_edm_grid": functools.partial(sampling.get_ddim_sampler, num_steps=100,
                                                eta=1.0, grid="edm"),
    # 200 PC steps uniform in sigma in [0.002, 20] are 0.1 apart, far too coarse where the
    # mixture's components are resolved; on EDM's rho grid they are fine.
    "pc_200_edm_grid": functools.partial(sampling.get_pc_sampler, num_steps=200, grid="edm"),
}


@functools.lru_cache(maxsize=None)
def mmd_null_std():
  """Std of the unbiased MMD^2 between two independent fresh data sets of this size."""
  keys = jax.random.split(jax.random.PRNGKey(123), 24)
  values = [float(evaluation.mmd2_unbiased(GMM.sample(k1, N_SAMPLES), GMM.sample(k2, N_SAMPLES)))
            for k1, k2 in zip(keys[::2], keys[1::2])]
  return float(np.std(values, ddof=1))


def assert_reproduces_the_mixture(x, what, mmd_null_sds=stats.Z):
  """Weights and component means (points assigned to the nearest mean) within stats.Z SE
  of the mixture's, and the unbiased MMD^2 to fresh mixture draws below mmd_null_sds
  standard deviations of its null distribution."""
  x = np.asarray(x)
  assert np.all(np.isfinite(x)), what
  nearest = np.argmin(((x[:, None] - np.asarray(GMM.means)[None]) ** 2).sum(-1), axis=1)
  for k, weight in enumerate(np.asarray(GMM.weights)):
    stats.assert_mean_close(nearest == k, weight, what=f"{what}: weight {k}")
    for d in range(2):
      stats.assert_mean_close(x[nearest == k, d], float(GMM.means[k, d]), what=f"{what}: mean {k}")
  mmd2 = float(evaluation.mmd2_unbiased(jnp.asarray(x), GMM.sample(jax.random.PRNGKey(99), N_SAMPLES)))
  assert mmd2 < mmd_null_sds * mmd_null_std(), (
      f"{what}: MMD^2 {mmd2:.2e} vs null std {mmd_null_std():.2e}")


# Corrector-only sampling tracks p_t only where the means stay put (VE, as in NCSN);
# under VP and sub-VP the means move as alpha(t) mu, and Langevin steps of size
# ~sigma(t)^2 cannot follow them at small t: those pairs are not a valid sampler.
def _valid(sampler: str, sde: str) -> bool:
  if sampler == "ald_only":
    return sde == "ve"
  if sampler.endswith("edm_grid"):
    return sde == "edm"
  return sde != "edm" or not sampler.startswith("ddim")


# The default tier runs every sampler on VP and VE and two on sub-VP, EDM's process and
# rectified flow; the rest of those (and the newest samplers off VP, and corrector-only
# annealed Langevin dynamics) run in the slow tier (keeps `make test` under 10 minutes).
DEFAULT_ON_NEW = {"pc_reverse_diffusion_langevin", "edm_heun_36", "pc_200_edm_grid"}


def _marks(sampler: str, sde: str):
  new_sampler = sampler.startswith(("dpm_solver_3m", "dpm_solver_2s", "dpm_solver_2m_sde"))
  slow = ((sde in ("subvp", "edm", "rf") and sampler not in DEFAULT_ON_NEW)
          or (new_sampler and sde != "vp") or sampler == "ald_only")
  return [pytest.mark.slow] if slow else []


PAIRS = [pytest.param(sampler, sde, marks=_marks(sampler, sde)) for sampler in sorted(SAMPLERS)
         for sde in sorted(SDES) if _valid(sampler, sde)]


@pytest.mark.parametrize("sampler_name, sde_name", PAIRS)
def test_sampler_reproduces_the_mixture_with_the_exact_score(sampler_name, sde_name):
  sde = SDES[sde_name]
  sampler = SAMPLERS[sampler_name](sde, (N_SAMPLES, 2))
  x, _ = jax.jit(sampler, static_argnums=1)(jax.random.PRNGKey(0), GMM.score_fn(sde))
  assert_reproduces_the_mixture(x, f"{sampler_name} / {sde_name}")


def test_edm_heun_with_the_published_stochastic_settings():
  """Karras et al. (2022): S_churn 40, S_tmin 0.05, S_tmax 50, S_noise 1.003 on a VE SDE
  with sigma_max 80: steps outside [S_tmin, S_tmax] add no noise (sqrt of a difference of
  equal squares used to round negative there: all-NaN samples)."""
  sde = sde_lib.VESDE(sigma_min=0.002, sigma_max=80.0, N=1000)
  sampler = sampling.get_edm_sampler(sde, (N_SAMPLES, 2), num_steps=64, s_churn=40.0,
                                     s_tmin=0.05, s_tmax=50.0, s_noise=1.003)
  x, nfe = jax.jit(sampler, static_argnums=1)(jax.random.PRNGKey(0), GMM.score_fn(sde))
  assert nfe == 2 * 64 + 1
  assert_reproduces_the_mixture(x, "edm_heun published churn / ve sigma_max 80")


def _algorithm_2_step(denoiser, x, sigma, sigma_next, gamma, z):
  """Karras et al. (2022) Algorithm 2, lines 5-10, for a process with alpha = 1: x [B, D],
  sigma and sigma_next floats, denoiser(x, sigma) -> D(x; sigma)."""
  sigma_hat = sigma + gamma * sigma
  x_hat = x + np.sqrt(sigma_hat**2 - sigma**2) * z
  d = (x_hat - denoiser(x_hat, sigma_hat)) / sigma_hat
  x_next = x_hat + (sigma_next - sigma_hat) * d
  d_next = (x_next - denoiser(x_next, sigma_next)) / sigma_next
  return x_hat + (sigma_next - sigma_hat) * (0.5 * d + 0.5 * d_next)


@pytest.mark.parametrize("sde_name", ["ve", "edm"])
def test_edm_churn_evaluates_the_denoiser_at_sigma_hat_above_sigma_max(sde_name):
  """The first step from sigma_max with gamma = sqrt(2) - 1 churns to sigma_hat = 28.3 >
  sigma_max = 20; Algorithm 2 evaluates D there. VE's time of sigma, t = T ln(sigma /
  sigma_min) / ln(sigma_max / sigma_min), and EDM's, t = sigma, continue past T (clipping
  sigma_hat at sigma_max by evaluating at t = T moves the step by up to 4.8 here, on
  states of scale 20)."""
  sde, key = SDES[sde_name], jax.random.PRNGKey(11)
  t_of = {"ve": lambda s: sde.T * np.log(s / sde.sigma_min) / np.log(sde.sigma_max / sde.sigma_min),
          "edm": lambda s: s}[sde_name]
  x = 20.0 * jax.random.normal(key, (64, 2))
  z = jax.random.normal(jax.random.fold_in(key, 1), (64, 2))
  score_fn = GMM.score_fn(sde)
  denoiser = lambda x, s: x + s**2 * score_fn(x, jnp.full((64,), t_of(s), x.dtype))
  sigma, gamma = 20.0, np.sqrt(2.0) - 1.0
  t, t_next = jnp.full((64,), sde.T), jnp.full((64,), t_of(12.0))
  ours, _ = sampling.edm_heun_step(sde, score_fn, z, x, t, t_next, None, gamma_max=gamma)
  want = _algorithm_2_step(denoiser, x, sigma, 12.0, gamma, z)
  np.testing.assert_allclose(ours, want, rtol=1e-4, atol=1e-4)


def test_ancestral_sampling_works_for_a_new_linear_sde():
  sde = OrnsteinUhlenbeckSDE(theta=3.0, scale=2.0, N=400, T=2.0)   # prior N(0, 2/3)
  sampler = sampling.get_pc_sampler(sde, (N_SAMPLES, 2), "ancestral_sampling", "langevin",
                                    snr=0.05)
  x, _ = jax.jit(sampler, static_argnums=1)(jax.random.PRNGKey(1), GMM.score_fn(sde))
  assert_reproduces_the_mixture(x, "ancestral + langevin / Ornstein-Uhlenbeck")


def counting(score_fn):
  """Wraps score_fn so that each evaluation increments a host-side counter."""
  count = [0]

  def bump():
    count[0] += 1

  def wrapped(x, t):
    jax.debug.callback(bump, ordered=True)
    return score_fn(x, t)

  return wrapped, count


@pytest.mark.parametrize("sampler_name", sorted(SAMPLERS))
def test_nfe_is_the_number_of_score_evaluations(sampler_name):
  sde = sde_lib.VPSDE(N=40)
  score_fn, count = counting(GMM.score_fn(sde))
  _, nfe = SAMPLERS[sampler_name](sde, (16, 2))(jax.random.PRNGKey(0), score_fn)
  jax.effects_barrier()
  assert int(nfe) == count[0] > 0


@pytest.mark.parametrize("sde_name", sorted(SDES))
def test_ode_sampler_is_deterministic_and_invertible(sde_name):
  sde = SDES[sde_name]
  score_fn = GMM.score_fn(sde)
  sampler = jax.jit(sampling.get_ode_sampler(sde, (256, 2)), static_argnums=1)
  z = sde.prior_sampling(jax.random.PRNGKey(0), (256, 2))
  x1, _ = sampler(jax.random.PRNGKey(1), score_fn, z)
  x2, _ = sampler(jax.random.PRNGKey(2), score_fn, z)
  np.testing.assert_array_equal(x1, x2)
  # Encode data to T, decode back: the input returns within solver tolerance.
  data = GMM.sample(jax.random.PRNGKey(3), 256)
  solve = jax.jit(sampling.solve_probability_flow, static_argnums=(0, 1))
  encoded, _ = solve(sde, score_fn, data, 1e-3, sde.T, 1e-6, 1e-6)
  decoded, _ = solve(sde, score_fn, encoded, sde.T, 1e-3, 1e-6, 1e-6)
  np.testing.assert_allclose(decoded, data, atol=2e-3 * sde.prior_std)


@pytest.mark.parametrize("kind", sampling.TIME_GRIDS)
def test_time_grids_run_from_T_to_eps(kind):
  sde = sde_lib.VPSDE(T=2.0)
  grid = np.asarray(sampling.time_grid(sde, 10, kind, eps=1e-3))
  assert grid.shape == (11,)
  np.testing.assert_allclose([grid[0], grid[-1]], [2.0, 1e-3], rtol=1e-4)
  assert np.all(np.diff(grid) < 0)


@dataclasses.dataclass(frozen=True)
class BrownianSDE(sde_lib.SDE):
  """A variance-exploding SDE that is not a VESDE: dx = scale dW, x_t = x_0 + scale sqrt(t) z."""

  scale: float = 2.0
  N: int = 100
  T: float = 1.0

  def coefficients(self, t):
    return jnp.zeros_like(t), self.scale * jnp.ones_like(t)

  def marginal(self, t):
    return jnp.ones_like(t), self.scale * jnp.sqrt(t)


@pytest.mark.parametrize("sde_name, published", [("vp", "transition"), ("subvp", "transition"),
                                                 ("ve", "posterior"), ("edm", "posterior"),
                                                 ("rf", "transition"), ("brownian", "posterior"),
                                                 ("ou", "transition")])
def test_ancestral_variances(sde_name, published):
  """One ancestral step's noise std: sqrt(v) (DDPM's beta) or sqrt(v) sigma_s / sigma_t
  (beta-tilde), with (a, v) the exact transition; "ancestral_sampling" is score_sde's
  choice (VE: posterior; VP: beta), decided by whether alpha = 1, so a user's SDE gets it
  too."""
  sde = {"vp": sde_lib.VPSDE(), "subvp": sde_lib.subVPSDE(),
         "ve": sde_lib.VESDE(sigma_min=0.01, sigma_max=10.0), "edm": sde_lib.EDMProcess(),
         "rf": sde_lib.RectifiedFlow(), "brownian": BrownianSDE(),
         "ou": OrnsteinUhlenbeckSDE(theta=3.0, scale=2.0, N=400, T=2.0)}[sde_name]
  rsde = sde.reverse(lambda x, t: -x)
  x, t, s = jnp.ones((3, 2)), jnp.full((3,), 0.6), jnp.full((3,), 0.5)
  _, v = sde.transition(t, s)
  posterior = jnp.sqrt(v) * sde.marginal(s)[1] / sde.marginal(t)[1]
  z = jax.random.normal(jax.random.PRNGKey(0), x.shape)
  for name, std in (("ancestral_posterior", posterior), ("ancestral_transition", jnp.sqrt(v)),
                    ("ancestral_sampling", posterior if published == "posterior" else jnp.sqrt(v))):
    x_next, x_mean = sampling.PREDICTORS[name](rsde, jax.random.PRNGKey(0), x, t, s)
    np.testing.assert_allclose(x_next - x_mean, std[:, None] * z, rtol=1e-5, atol=1e-7)
  assert float(jnp.min(jnp.sqrt(v) - posterior)) > 1e-3      # the two differ here


def test_unknown_names_list_the_valid_choices():
  sde = sde_lib.VPSDE()
  with pytest.raises(ValueError, match="'ancestral'.*ancestral_sampling"):
    sampling.get_pc_sampler(sde, (2, 2), predictor="ancestral")
  with pytest.raises(ValueError, match="'hmc'.*langevin"):
    sampling.get_pc_sampler(sde, (2, 2), corrector="hmc")
  with pytest.raises(ValueError, match="'cosine'.*logsnr"):
    sampling.time_grid(sde, 4, "cosine")


def test_too_coarse_reverse_diffusion_is_refused():
  # DDPM's step needs beta(t) dt < 1: beta(1) = 20 with dt = (1 - eps) / 19 gives 1.05,
  # NaN samples; 21 steps give 0.9995.
  with pytest.raises(ValueError, match="num_steps=20 is too few for the reverse_diffusion"):
    sampling.get_pc_sampler(sde_lib.VPSDE(), (2, 2), num_steps=20)
  x, _ = sampling.get_pc_sampler(sde_lib.VPSDE(), (2, 2), num_steps=21)(
      jax.random.PRNGKey(0), lambda x, t: -x)
  assert np.all(np.isfinite(x))


def _euler_step(sde, score_fn, z, x, t, t_next, memory):
  del z
  drift, _ = sde.reverse(score_fn, probability_flow=True).sde(x, t)
  return x + drift * sde_lib.batch_broadcast(t_next - t, x), memory


# The order tests run on VP in the default tier and on VE too in the slow tier.
ORDERS = {   # sampler -> (factory with its settings, order of accuracy)
    "ddim": (sampling.get_ddim_sampler, 1),
    "euler_probability_flow": (functools.partial(
        sampling.get_pc_sampler, predictor="euler_maruyama", corrector="none",
        probability_flow=True), 1),
    "edm_heun": (sampling.get_edm_sampler, 2),
    "dpm_solver_2m": (sampling.get_dpm_solver_sampler, 2),
    "dpm_solver_2s": (sampling.get_dpm_solver_2s_sampler, 2),
    # A sampler defined by its step alone (the probability-flow ODE's Euler step in
    # t, written below): grid_sampler does the rest.
    "euler_step_on_a_grid": (lambda sde, shape, num_steps, denoise: sampling.grid_sampler(
        sde, shape, _euler_step, num_steps, "uniform", 1e-3, denoise=denoise), 1),
    # Third-order steps after a first- and a second-order warm-up step (as published):
    # the warm-up's local error O(h^2) makes the global order 2 (measured -2.16 to -2.25).
    "dpm_solver_3m": (sampling.get_dpm_solver_3m_sampler, 2),
}


@pytest.mark.parametrize("sde_name", ["vp", pytest.param("ve", marks=pytest.mark.slow)])
@pytest.mark.parametrize("sampler_name", sorted(ORDERS))
def test_deterministic_samplers_converge_at_their_order(sampler_name, sde_name):
  """On Gaussian data N(0, 0.5^2) the exact score is linear in x, so a deterministic
  sampler maps its prior draw x_T to c_N x_T: the ratio of its output at N steps to its
  output at 2048 steps (same key, same x_T) is c_N / c_2048, free of Monte-Carlo noise.
  Its error falls as N^-order: measured slopes -0.92 to -1.00 for the first-order
  samplers and -1.93 to -2.06 for the second-order ones on N = 16 .. 128. DDIM is
  DPM-Solver++ without its multistep term (Lu et al., 2022), so that bug would measure
  about -1 where -2 is asserted, as would a Heun step without its correction (an Euler
  step)."""
  factory, order = ORDERS[sampler_name]
  steps = np.array([16, 32, 64, 128])
  errors = _relative_errors(factory, sde_name, steps)
  slope = np.polyfit(np.log(steps), np.log(errors), 1)[0]
  assert abs(slope + order) < 0.25, (errors, slope)


def _relative_errors(factory, sde_name, steps):
  """max |c_N / c_2048 - 1| over 4 draws for each N (see the test above)."""
  sde = {"vp": sde_lib.VPSDE(), "ve": sde_lib.VESDE(sigma_min=0.01, sigma_max=20.0)}[sde_name]
  gaussian = densities.GaussianMixture(jnp.zeros((1, 1)), jnp.array([0.5]), jnp.ones(1))
  score_fn = gaussian.score_fn(sde)

  def run(num_steps):
    sampler = factory(sde, (4, 1), num_steps=num_steps, denoise=False)
    return np.asarray(jax.jit(sampler, static_argnums=1)(jax.random.PRNGKey(0), score_fn)[0])

  reference = run(2048)
  return np.array([np.max(np.abs(run(n) / reference - 1.0)) for n in steps])


@pytest.mark.parametrize("sde_name", ["vp", pytest.param("ve", marks=pytest.mark.slow)])
def test_dpm_solver_3m_third_order_steps_beat_2m(sde_name):
  """The third-order term is what makes 3M more than 2M: its error is 0.36-0.37 of
  2M's at N = 64 and 128 (measured); dropping the second divided difference (a 2M-like
  step) or flipping the sign of phi_3 gives 1.0-1.7 of 2M's."""
  steps = np.array([64, 128])
  ratio = (_relative_errors(sampling.get_dpm_solver_3m_sampler, sde_name, steps)
           / _relative_errors(sampling.get_dpm_solver_sampler, sde_name, steps))
  assert np.all(ratio < 0.5), ratio


STOCHASTIC_ORDERS = {   # sampler -> (factory with its settings, weak order)
    # DDPM's ancestral step, which is also SDE-DPM-Solver++(2M) without its multistep term.
    "ddim_eta1_logsnr": (functools.partial(sampling.get_ddim_sampler, eta=1.0, grid="logsnr"), 1),
    "edm_heun_churn": (functools.partial(sampling.get_edm_sampler, s_churn=10.0), 2),
    "dpm_solver_2m_sde": (sampling.get_dpm_solver_sde_sampler, 2),
}


def _exact_variance_errors(factory, sde, steps):
  """|Var(output) / Var(p_eps) - 1| of the exact output law on N(0, 0.5^2) data, started
  from the exact p_T (densities.gaussian_sampler_variance)."""
  alpha, sigma = sde.marginal(jnp.array([1e-3]))
  exact = float(alpha[0] ** 2 * 0.25 + sigma[0] ** 2)
  make = lambda sde, shape, n: factory(sde, shape, num_steps=n, denoise=False)
  return np.array([abs(float(densities.gaussian_sampler_variance(sde, make, int(n), 0.5)) / exact - 1)
                   for n in steps])


@pytest.mark.parametrize("sde_name", ["vp", pytest.param("ve", marks=pytest.mark.slow)])
@pytest.mark.parametrize("sampler_name", sorted(STOCHASTIC_ORDERS))
def test_stochastic_samplers_converge_at_their_weak_order(sampler_name, sde_name):
  """With the prior draw and every step's noise fixed, a sampler on Gaussian data is
  affine in them, so its output law is exact (no Monte Carlo): its variance against
  p_eps's measures the weak error. Each local slope d log error / d log N between
  successive N = 64, 128, 256 (the asymptotic range: measured local slopes on VP / VE,
  DDPM's ancestral step -0.93 to -0.97 / -0.94 to -0.97, EDM's Heun with churn -2.00 to
  -2.02 / -1.99, SDE-DPM-Solver++(2M) -1.99 / -1.99; from N = 512 float32 round-off bends
  2M's) within 0.1 of minus the order. A fit over N = 32-128 is pre-asymptotic: churn
  with D evaluated at sigma instead of sigma_hat fits -2.33 there on VP, but its local
  slopes are -0.79 and -0.15 here (-0.72, -0.89 at 256-1024): first order."""
  factory, order = STOCHASTIC_ORDERS[sampler_name]
  sde = {"vp": sde_lib.VPSDE(), "ve": sde_lib.VESDE(sigma_min=0.01, sigma_max=20.0)}[sde_name]
  steps = np.array([64, 128, 256])
  errors = _exact_variance_errors(factory, sde, steps)
  local_slopes = np.diff(np.log(errors)) / np.diff(np.log(steps))
  assert np.all(np.abs(local_slopes + order) < 0.1), (errors, local_slopes)


def test_exact_sampler_variance_matches_monte_carlo():
  """densities.gaussian_sampler_variance against 2^18 draws of SDE-DPM-Solver++(2M)
  (16 steps, prior N(0, 1)): within 4 standard errors of the sample variance."""
  sde = sde_lib.VPSDE()
  make = lambda sde, shape, n: sampling.get_dpm_solver_sde_sampler(sde, shape, num_steps=n,
                                                                   denoise=False)
  exact = float(densities.gaussian_sampler_variance(sde, make, 16, 0.5, prior_variance=1.0))
  gaussian = densities.GaussianMixture(jnp.zeros((1, 1)), jnp.array([0.5]), jnp.ones(1))
  n = 2**18
  x, _ = jax.jit(make(sde, (n, 1), 16), static_argnums=1)(jax.random.PRNGKey(0),
                                                            gaussian.score_fn(sde))
  sample_variance = float(jnp.mean(x**2))
  assert abs(sample_variance - exact) < stats.Z * exact * np.sqrt(2 / n), (sample_variance, exact)

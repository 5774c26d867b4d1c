"""Samplers for score-based models, all run on the device.

Every sampler is built by a factory from an SDE and a sample shape and is called as
`sampler(key, score_fn) -> (samples, nfe)`, where `nfe` counts evaluations of
`score_fn` (one call on the whole batch = one evaluation).

* `get_pc_sampler`: predictor-corrector sampling (Song et al., 2021, Algorithms 2-5)
  under `lax.scan`. Predictors step t_i -> t_{i+1} on the grid
  t = [linspace(T, eps, N), 0] (N score evaluations, the last step lands on 0);
  correctors run at t_i before each predictor step.
* `get_ode_sampler`: the probability-flow ODE from T to eps with diffrax's adaptive
  Dormand-Prince 5(4) solver.
* Few-step samplers: a step function each, run over a grid from `time_grid` by
  `grid_sampler` (see there): DDIM (Song, Meng & Ermon, 2021a, any eta), EDM's Heun
  with optional churn (Karras et al., 2022), DPM-Solver++(2M), its stochastic variant,
  (3M) and (2S) (Lu et al., 2022), and multistep consistency sampling (Song et al.,
  2023; a consistency function enters as a score, consistency.as_score_fn). They apply
  to every linear SDE through alpha(t), sigma(t).

`denoise=True` (every factory's default, as score_sde's `noise_removal`) ends a sampler
with Tweedie's formula at the last time, x_0 = (x + sigma^2 s(x, t)) / alpha (one more
evaluation), except the PC sampler, which (as published) returns the noise-free mean of
its last step instead.
"""
import functools
import math

import diffrax
import jax
import jax.numpy as jnp

import sde_lib

batch_broadcast = sde_lib.batch_broadcast
ScoreFn = sde_lib.ScoreFn


def _vec(t, x):
  """The scalar time t as a batch of times [B] for x [B, ...]."""
  return jnp.full((x.shape[0],), t, dtype=x.dtype)


def tweedie_denoise(sde: sde_lib.SDE, score_fn: ScoreFn, x, t):
  """E[x_0 | x_t = x] = (x + sigma(t)^2 s(x, t)) / alpha(t); t [B]."""
  alpha, sigma = sde.marginal(t)
  return (x + batch_broadcast(sigma**2, x) * score_fn(x, t)) / batch_broadcast(alpha, x)


# --- Predictors: (rsde, key, x, t, t_next) -> (x, x_mean), t and t_next [B]. ----------

def euler_maruyama_predictor(rsde: sde_lib.ReverseSDE, key, x, t, t_next):
  """x_mean = x + drift dt, x = x_mean + g sqrt(|dt|) z with dt = t_next - t < 0."""
  dt = t_next - t
  drift, g = rsde.sde(x, t)
  x_mean = x + drift * batch_broadcast(dt, x)
  return x_mean + batch_broadcast(g * jnp.sqrt(-dt), x) * jax.random.normal(key, x.shape), x_mean


def reverse_diffusion_predictor(rsde: sde_lib.ReverseSDE, key, x, t, t_next):
  """The reverse of the SDE's own discretization (SMLD for VE, DDPM for VP)."""
  f, G = rsde.discretize(x, t, t - t_next)
  x_mean = x - f
  return x_mean + batch_broadcast(G, x) * jax.random.normal(key, x.shape), x_mean


def _ancestral_step(rsde: sde_lib.ReverseSDE, key, x, t, t_next, posterior: bool):
  """Ancestral step from t to s = t_next. With the exact transition x_t | x_s ~ N(a x_s, v)
  of the linear SDE, the mean is (x + v s(x, t)) / a (DDPM's (x + beta s) / sqrt(1 - beta),
  SMLD's x + (sigma_t^2 - sigma_s^2) s); the variance is the posterior's
  v sigma_s^2 / sigma_t^2 (DDPM's beta-tilde) or, not `posterior`, v itself (beta).
  Defined for every linear SDE. Deterministic (DDIM) when `rsde.probability_flow`."""
  sde, score_fn = rsde.forward, rsde.score_fn
  a, v = sde.transition(t, t_next)
  x_mean = (x + batch_broadcast(v, x) * score_fn(x, t)) / batch_broadcast(a, x)
  if rsde.probability_flow:
    return _ddim_step(sde, score_fn, None, x, t, t_next, eta=0.0), x_mean
  std = jnp.sqrt(v)
  if posterior:
    std = std * sde.marginal(t_next)[1] / sde.marginal(t)[1]
  return x_mean + batch_broadcast(std, x) * jax.random.normal(key, x.shape), x_mean


def ancestral_sampling_predictor(rsde: sde_lib.ReverseSDE, key, x, t, t_next):
  """Ancestral sampling as published (Song et al., 2021, score_sde): the posterior
  variance for variance-exploding processes (alpha = 1: SMLD's VE SDE, EDM's), the transition
  variance beta for the others (DDPM's sigma_t^2 = beta_t). `ancestral_posterior` /
  `ancestral_transition` fix one of them."""
  return _ancestral_step(rsde, key, x, t, t_next, rsde.forward.variance_exploding)


def ancestral_posterior_predictor(rsde: sde_lib.ReverseSDE, key, x, t, t_next):
  """Ancestral step with the posterior variance v sigma_s^2 / sigma_t^2 (beta-tilde)."""
  return _ancestral_step(rsde, key, x, t, t_next, posterior=True)


def ancestral_transition_predictor(rsde: sde_lib.ReverseSDE, key, x, t, t_next):
  """Ancestral step with the transition variance v (beta)."""
  return _ancestral_step(rsde, key, x, t, t_next, posterior=False)


def none_predictor(rsde, key, x, t, t_next):
  del rsde, key, t, t_next
  return x, x


PREDICTORS = {"euler_maruyama": euler_maruyama_predictor,
              "reverse_diffusion": reverse_diffusion_predictor,
              "ancestral_sampling": ancestral_sampling_predictor,
              "ancestral_posterior": ancestral_posterior_predictor,
              "ancestral_transition": ancestral_transition_predictor,
              "none": none_predictor}


# --- Correctors: (sde, score_fn, key, x, t, dt, snr, n_steps) -> (x, x_mean); dt > 0 is
# the sampler's step length. ---------------------------------------------------------

def _langevin_alpha(sde: sde_lib.SDE, t, dt):
  """alpha_i of Song et al. (2021) Alg. 5: the squared mean decay a^2 of one step of
  length dt (1 - beta_i for VP and sub-VP, 1 for VE)."""
  a, _ = sde.transition(t, jnp.maximum(t - dt, 0.0))
  return a**2


def _mean_norm(v):
  return jnp.mean(jnp.sqrt(jnp.sum(jnp.reshape(v, (v.shape[0], -1)) ** 2, axis=-1)))


def langevin_corrector(sde, score_fn, key, x, t, dt, snr, n_steps):
  """Langevin MCMC with step eps = 2 alpha_i (snr ||z|| / ||s||)^2 (Song et al., 2021,
  Algorithm 5). As in the reference implementation the norms are averaged over the
  batch: per-example norms blow the step up wherever s ~ 0 (at every mode), which in
  low dimensions is a large fraction of the samples."""
  alpha = _langevin_alpha(sde, t, dt)

  def step(i, carry):
    x, _ = carry
    grad = score_fn(x, t)
    noise = jax.random.normal(jax.random.fold_in(key, i), x.shape)
    step_size = 2 * alpha * (snr * _mean_norm(noise) / _mean_norm(grad)) ** 2
    x_mean = x + batch_broadcast(step_size, x) * grad
    return x_mean + batch_broadcast(jnp.sqrt(2 * step_size), x) * noise, x_mean

  return jax.lax.fori_loop(0, n_steps, step, (x, x))


def ald_corrector(sde, score_fn, key, x, t, dt, snr, n_steps):
  """Annealed Langevin dynamics (Song & Ermon, 2019): x + h s + sqrt(2 h) z with
  h = 2 alpha_i (snr sigma(t))^2, as score_sde. NCSN writes the same update as
  x + (a_i / 2) s + sqrt(a_i) z with a_i = eps sigma_i^2 / sigma_L^2, so a_i = 2 h and
  NCSN's eps corresponds to snr^2 = eps / (4 sigma_L^2) (VE: alpha_i = 1).

  Alone (predictor "none") it samples the VE SDE, as NCSN does; under VP or sub-VP the
  means alpha(t) x_0 move and steps of size ~sigma(t)^2 cannot follow them: pair it
  with a predictor there."""
  alpha = _langevin_alpha(sde, t, dt)
  _, sigma = sde.marginal(t)
  step_size = 2 * alpha * (snr * sigma) ** 2

  def step(i, carry):
    x, _ = carry
    noise = jax.random.normal(jax.random.fold_in(key, i), x.shape)
    x_mean = x + batch_broadcast(step_size, x) * score_fn(x, t)
    return x_mean + batch_broadcast(jnp.sqrt(2 * step_size), x) * noise, x_mean

  return jax.lax.fori_loop(0, n_steps, step, (x, x))


def none_corrector(sde, score_fn, key, x, t, dt, snr, n_steps):
  del sde, score_fn, key, t, dt, snr, n_steps
  return x, x


CORRECTORS = {"langevin": langevin_corrector, "ald": ald_corrector, "none": none_corrector}


def _lookup(registry, name, what):
  if name not in registry:
    raise ValueError(f"unknown {what} {name!r}; valid choices: {sorted(registry)}")
  return registry[name]


def get_pc_sampler(sde: sde_lib.SDE, shape, predictor="reverse_diffusion",
                   corrector="langevin", snr=0.16, n_steps=1, probability_flow=False,
                   denoise=True, eps=1e-3, num_steps=None, grid="uniform"):
  """Predictor-corrector sampler with num_steps (default sde.N) predictor steps on
  t = [time_grid(sde, num_steps - 1, grid, eps), 0]: "uniform" is score_sde's
  [linspace(T, eps, num_steps), 0]; "edm" or "logsnr" suit processes whose time is
  sigma itself (EDM's). Correctors scale their step by alpha_i, the squared mean decay
  of one step of length T / num_steps on the uniform grid (Alg. 5's 1 - beta_i of a
  num_steps-level chain), of t_i - t_{i+1} on the others."""
  predictor_fn = _lookup(PREDICTORS, predictor, "predictor")
  corrector_fn = _lookup(CORRECTORS, corrector, "corrector")
  num_steps = sde.N if num_steps is None else num_steps
  with jax.ensure_compile_time_eval():     # a factory may be called inside jit
    times = jnp.concatenate([time_grid(sde, num_steps - 1, grid, eps), jnp.zeros(1)])
  if grid == "uniform":
    step_lengths = jnp.full((num_steps,), sde.T / num_steps)
  else:
    step_lengths = times[:-1] - times[1:]
  if predictor == "reverse_diffusion":
    # The SDE's own discretization must exist at the grid's first step (DDPM's needs
    # beta(t) dt < 1: VP with beta_max 20 and T = 1 needs more than 20 steps).
    with jax.ensure_compile_time_eval():
      first_dt = float(times[0] - times[1])
      shrink, g = sde.discretize(jnp.ones((1, 1)), jnp.full((1,), sde.T), first_dt)
      finite = bool(jnp.all(jnp.isfinite(shrink)) and jnp.all(jnp.isfinite(g)))
    if not finite:
      raise ValueError(f"num_steps={num_steps} is too few for the reverse_diffusion predictor "
                       f"on {type(sde).__name__} (its discretization breaks down); use more "
                       "steps or another predictor")
  nfe = num_steps * ((predictor != "none") + n_steps * (corrector != "none"))

  def sampler(key, score_fn: ScoreFn, constrain=None, resamplings=1, x_T=None):
    """`constrain(key, x, t) -> x` (controllable_generation) is applied after every
    corrector and predictor step (key None: to the noise-free mean); with `resamplings`
    R > 1 each step is repeated R times, diffusing the result back to t in between
    (RePaint, Lugmayr et al., 2022). `x_T` [shape] replaces the draw from the prior."""
    rsde = sde.reverse(score_fn, probability_flow)
    k_prior, k_loop = jax.random.split(key)
    constrain = constrain or (lambda key, x, t: x)

    def step(carry, i):
      x, _ = carry
      t, t_next = _vec(times[i], x), _vec(times[i + 1], x)

      def attempt(x, key):
        k_c, k_p = jax.random.split(key)
        x, _ = corrector_fn(sde, score_fn, k_c, x, t, step_lengths[i], snr, n_steps)
        x = constrain(jax.random.fold_in(k_c, 1), x, t)
        x, x_mean = predictor_fn(rsde, k_p, x, t, t_next)
        return constrain(jax.random.fold_in(k_p, 1), x, t_next), constrain(None, x_mean, t_next)

      def again(u, carry):
        k = jax.random.fold_in(jax.random.fold_in(k_loop, i), u)
        a, v = sde.transition(t, t_next)
        x_back = (batch_broadcast(a, carry[0]) * carry[0] + batch_broadcast(jnp.sqrt(v), carry[0])
                  * jax.random.normal(jax.random.fold_in(k, 2), carry[0].shape))
        return attempt(x_back, k)

      x, x_mean = attempt(x, jax.random.fold_in(k_loop, i))
      return jax.lax.fori_loop(1, resamplings, again, (x, x_mean)), None

    x = sde.prior_sampling(k_prior, shape) if x_T is None else x_T
    (x, x_mean), _ = jax.lax.scan(step, (x, x), jnp.arange(num_steps))
    return (x_mean if denoise else x), nfe * resamplings

  return sampler


# --- Probability-flow ODE. ----------------------------------------------------------

def solve_probability_flow(sde: sde_lib.SDE, score_fn: ScoreFn, x, t0, t1,
                           rtol=1e-5, atol=1e-5, max_steps=4096):
  """Integrates the probability-flow ODE from t0 to t1 (either direction) with an
  adaptive Dormand-Prince 5(4) solver. Returns (x(t1), nfe) with
  nfe = 6 accepted-or-rejected steps + 1 (first-same-as-last)."""
  rsde = sde.reverse(score_fn, probability_flow=True)

  def vector_field(t, x, args):
    del args
    return rsde.sde(x, _vec(t, x))[0]

  solution = diffrax.diffeqsolve(
      diffrax.ODETerm(vector_field), diffrax.Dopri5(), t0=t0, t1=t1, dt0=None, y0=x,
      stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol), max_steps=max_steps)
  return solution.ys[-1], 6 * solution.stats["num_steps"] + 1


def get_ode_sampler(sde: sde_lib.SDE, shape, rtol=1e-5, atol=1e-5, denoise=True, eps=1e-3):
  """Samples by solving the probability-flow ODE from a prior draw at T down to eps."""

  def sampler(key, score_fn: ScoreFn, z=None):
    """`z` optionally fixes the prior sample (the map z -> x is deterministic)."""
    x = sde.prior_sampling(key, shape) if z is None else z
    x, nfe = solve_probability_flow(sde, score_fn, x, sde.T, eps, rtol, atol)
    if denoise:
      x, nfe = tweedie_denoise(sde, score_fn, x, _vec(eps, x)), nfe + 1
    return x, nfe

  return sampler


# --- Few-step samplers. --------------------------------------------------------------

TIME_GRIDS = ("uniform", "logsnr", "edm")


def time_grid(sde: sde_lib.SDE, num_steps: int, kind: str, eps: float = 1e-3, rho: float = 7.0):
  """num_steps + 1 decreasing times from T to eps:

    "uniform": uniform in t (as DDPM/DDIM);
    "logsnr":  uniform in lambda = log(alpha / sigma) (DPM-Solver's default);
    "edm":     Karras et al. (2022) eq. 5 in sigma_hat = sigma / alpha:
               sigma_hat_i = (s_max^(1/rho) + i / n (s_min^(1/rho) - s_max^(1/rho)))^rho.
  """
  return grid_times(sde, jnp.arange(num_steps + 1) / num_steps, kind, eps, rho)


def grid_times(sde: sde_lib.SDE, fractions, kind: str, eps: float = 1e-3, rho: float = 7.0):
  """The times at `fractions` (any shape, in [0, 1]: 0 is T, 1 is eps) of the grid `kind`
  (time_grid's i / n); the fractions may be traced, so a grid's size can change under jit."""
  if kind == "uniform":
    return sde.T + fractions * (eps - sde.T)
  lam_T, lam_eps = sde.log_snr(jnp.array([sde.T, eps]))
  if kind == "logsnr":
    return sde.t_of_log_snr(lam_T + fractions * (lam_eps - lam_T), eps)
  if kind == "edm":
    root_max, root_min = jnp.exp(-lam_T / rho), jnp.exp(-lam_eps / rho)
    sigma_hat = (root_max + fractions * (root_min - root_max)) ** rho
    return sde.t_of_log_snr(-jnp.log(sigma_hat), eps)
  raise ValueError(f"unknown time grid {kind!r}; valid choices: {list(TIME_GRIDS)}")


# A few-step sampler is a step function run over a time grid by `grid_sampler`:
#
#   step(sde, score_fn, z, x, t, t_next, memory) -> (x_next, memory)
#
# moves x from t to t_next ([B] times each); z is a standard normal draw shaped like x
# (stochastic steps use it, the others ignore it). `memory` is what a multistep method
# keeps from earlier steps (its `init_memory(x)` at the first step; None otherwise).


def grid_sampler(sde: sde_lib.SDE, shape, step, num_steps: int, grid: str, eps: float,
                 evals_per_step: int = 1, init_memory=lambda x: None, rho: float = 7.0,
                 denoise: bool = True):
  """Draws x_T from the prior, applies `step` over time_grid(sde, num_steps, grid, eps,
  rho) and, with `denoise`, ends with Tweedie's formula at the last time (one more
  evaluation). Returns the sampler (key, score_fn, x_T=None, noises=None) -> (samples,
  nfe); x_T [shape] and noises [num_steps, *shape] (standard normal) optionally fix the
  prior draw and each step's z, which makes the samples a deterministic function of
  them (affine on Gaussian data: tests and experiments read the output law off it)."""
  times = time_grid(sde, num_steps, grid, eps, rho)

  def sampler(key, score_fn: ScoreFn, x_T=None, noises=None):
    k_prior, k_loop = jax.random.split(key)

    def body(carry, i):
      x, memory = carry
      t, t_next = _vec(times[i], x), _vec(times[i + 1], x)
      z = (jax.random.normal(jax.random.fold_in(k_loop, i), x.shape) if noises is None
           else noises[i])
      return step(sde, score_fn, z, x, t, t_next, memory), None

    x = sde.prior_sampling(k_prior, shape) if x_T is None else x_T
    (x, _), _ = jax.lax.scan(body, (x, init_memory(x)), jnp.arange(num_steps))
    nfe = evals_per_step * num_steps
    if denoise:
      return tweedie_denoise(sde, score_fn, x, _vec(times[-1], x)), nfe + 1
    return x, nfe

  return sampler


def _ddim_step(sde, score_fn, z, x, t, t_next, eta):
  """x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z,
  c = eta sqrt(v sigma_s^2 / sigma_t^2) (eta = 1: ancestral; eta = 0: deterministic)."""
  alpha_t, sigma_t = sde.marginal(t)
  alpha_s, sigma_s = sde.marginal(t_next)
  eps_hat = -batch_broadcast(sigma_t, x) * score_fn(x, t)
  x0_hat = (x - batch_broadcast(sigma_t, x) * eps_hat) / batch_broadcast(alpha_t, x)
  _, v = sde.transition(t, t_next)
  c = eta * jnp.sqrt(v) * sigma_s / sigma_t
  direction = jnp.sqrt(jnp.maximum(sigma_s**2 - c**2, 0.0))
  noise = z if eta else 0.0
  return (batch_broadcast(alpha_s, x) * x0_hat + batch_broadcast(direction, x) * eps_hat
          + batch_broadcast(c, x) * noise)


def ddim_step(sde, score_fn, z, x, t, t_next, memory, eta=0.0):
  """DDIM (Song, Meng & Ermon, 2021): see _ddim_step."""
  return _ddim_step(sde, score_fn, z, x, t, t_next, eta), memory


def edm_heun_step(sde, score_fn, z, x, t, t_next, memory, gamma_max=0.0, s_tmin=0.0,
                  s_tmax=float("inf"), s_noise=1.0):
  """One step of Karras et al. (2022) Algorithm 2: churn (gamma = gamma_max where
  sigma_hat(t) is in [s_tmin, s_tmax]), then Heun. Works in x_hat = x / alpha(t) with
  sigma_hat = sigma / alpha, where every linear SDE's probability-flow ODE is
  dx_hat / d sigma_hat = (x_hat - D(x_hat)) / sigma_hat with the denoiser
  D = x_hat + sigma_hat^2 alpha s(alpha x_hat, t).

  D is evaluated at the churned level, which can exceed sigma_hat(T) on the first steps
  (by up to sqrt 2), at its time up to sde.max_time: exactly Algorithm 2 on VE and EDM.
  VP, sub-VP and rectified flow end at T, so there D is evaluated at sigma_hat(T) while
  x_hat carries the churned noise (VP: 152.2 instead of 215.2 at the first of 8 steps).
  Measured cost (experiments/sampler_bias's exact KL, N(0, 0.5^2) data, churn 10, VP):
  KL(p_eps || output) 0.1379 against 0.1325 for a VPSDE whose max_time is raised to 2T,
  at N = 8; equal to 4 digits from N = 16."""
  b = lambda v: batch_broadcast(v, x)
  sigma_hat_of = lambda t: jnp.exp(-sde.log_snr(t))

  def slope(x_hat, t):   # (x_hat - D) / sigma_hat
    alpha = b(sde.marginal(t)[0])
    return -b(sigma_hat_of(t)) * alpha * score_fn(alpha * x_hat, t)

  s_cur, s_next = sigma_hat_of(t), sigma_hat_of(t_next)
  gamma = jnp.where((s_cur >= s_tmin) & (s_cur <= s_tmax), gamma_max, 0.0)
  s_churned = s_cur * (1.0 + gamma)
  t_churned = (sde.t_of_log_snr(-jnp.log(s_churned), 0.0, sde.max_time) if gamma_max > 0
               else t)
  # sqrt(s_churned^2 - s_cur^2), written so that gamma = 0 gives exactly 0 (the
  # difference of squares can round to a negative number: NaN).
  added_std = s_cur * jnp.sqrt(gamma * (2.0 + gamma))
  x_hat = x / b(sde.marginal(t)[0]) + b(added_std) * s_noise * z
  d_cur = slope(x_hat, t_churned)
  h = b(s_next - s_churned)
  d_next = slope(x_hat + h * d_cur, t_next)
  return b(sde.marginal(t_next)[0]) * (x_hat + h * 0.5 * (d_cur + d_next)), memory


def _first_order_update(sde, x, t, t_next, x0):
  """DPM-Solver++'s first-order step in data prediction (= DDIM with eta 0):
  x_s = (sigma_s / sigma_t) x - alpha_s expm1(-h) x0, h = lambda(t_next) - lambda(t)."""
  h = sde.log_snr(t_next) - sde.log_snr(t)
  alpha_s, sigma_s = sde.marginal(t_next)
  sigma_t = sde.marginal(t)[1]
  return batch_broadcast(sigma_s / sigma_t, x) * x - batch_broadcast(alpha_s * jnp.expm1(-h), x) * x0


def multistep_memory(x):
  """The memory of the DPM-Solver++ multistep methods: the last two data predictions,
  the last two log-SNR steps h and the number of steps taken."""
  ones = jnp.ones((x.shape[0],), x.dtype)
  return jnp.zeros_like(x), jnp.zeros_like(x), ones, ones, jnp.zeros((), jnp.int32)


def dpm_solver_2m_step(sde, score_fn, z, x, t, t_next, memory, eta=0.0):
  """DPM-Solver++(2M) (Lu et al., 2022, Algorithm 2) in data prediction x0_hat, with
  h = lambda(t_next) - lambda(t), r = h_prev / h and the midpoint update

    x_s = (sigma_s / sigma_t) e^(-eta h) x + alpha_s (1 - e^(-(1 + eta) h)) (x0 + (x0 - x0_prev) / (2r))
          + sigma_s sqrt(1 - e^(-2 eta h)) z.

  eta = 0 is the ODE solver (Algorithm 2: D = (1 + 1/(2r)) x0_i - 1/(2r) x0_{i-1}); eta = 1
  is SDE-DPM-Solver++(2M) (Lu et al., 2022; k-diffusion's dpmpp_2m_sde, midpoint form).
  The first step is first order (no x0_prev)."""
  x0_1, _, h_1, _, count = memory
  x0 = tweedie_denoise(sde, score_fn, x, t)
  h = sde.log_snr(t_next) - sde.log_snr(t)                      # [B], > 0
  alpha_s, sigma_s = sde.marginal(t_next)
  sigma_t = sde.marginal(t)[1]
  b = lambda v: batch_broadcast(v, x)
  d = jnp.where(count == 0, x0, x0 + b(0.5 * h / h_1) * (x0 - x0_1))
  x = (b(sigma_s / sigma_t * jnp.exp(-eta * h)) * x - b(alpha_s * jnp.expm1(-(1 + eta) * h)) * d)
  if eta:
    x = x + b(sigma_s * jnp.sqrt(-jnp.expm1(-2 * eta * h))) * z
  return x, (x0, x0_1, h, h_1, count + 1)


def dpm_solver_3m_step(sde, score_fn, z, x, t, t_next, memory):
  """DPM-Solver++(3M) (k-diffusion's, eta 0): the first-order update of x0 plus
  alpha_s (phi_2 D1 - phi_3 D2), phi_2 = 1 - (1 - e^-h) / h, phi_3 = phi_2 / h - 1/2, with
  D1, D2 the first and second divided differences of the last three x0_hat in lambda;
  first and second order on the first two steps."""
  del z
  x0_1, x0_2, h_1, h_2, count = memory
  x0 = tweedie_denoise(sde, score_fn, x, t)
  h = sde.log_snr(t_next) - sde.log_snr(t)
  b = lambda v: batch_broadcast(v, x)
  phi_2 = jnp.expm1(-h) / h + 1.0          # ~ h / 2
  phi_3 = phi_2 / h - 0.5                  # ~ h / 6
  r0, r1 = h_1 / h, h_2 / h
  d1_0, d1_1 = b(1 / r0) * (x0 - x0_1), b(1 / r1) * (x0_1 - x0_2)
  d1 = d1_0 + b(r0 / (r0 + r1)) * (d1_0 - d1_1)
  d2 = b(1 / (r0 + r1)) * (d1_0 - d1_1)
  second = b(phi_2) * d1_0
  third = b(phi_2) * d1 - b(phi_3) * d2
  correction = jnp.where(count == 0, 0.0, jnp.where(count == 1, second, third))
  x = _first_order_update(sde, x, t, t_next, x0) + b(sde.marginal(t_next)[0]) * correction
  return x, (x0, x0_1, h, h_1, count + 1)


def dpm_solver_2s_step(sde, score_fn, z, x, t, t_next, memory, eps=1e-3, r=0.5):
  """DPM-Solver++(2S) (Lu et al., 2022, Algorithm 1): a first-order step to the
  intermediate log-SNR lambda_t + r h (time u), then the step t -> t_next with
  D = (1 - 1/(2r)) x0(x, t) + 1/(2r) x0(x_u, u); two evaluations."""
  del z
  lam_t = sde.log_snr(t)
  u = sde.t_of_log_snr(lam_t + r * (sde.log_snr(t_next) - lam_t), eps)
  x0 = tweedie_denoise(sde, score_fn, x, t)
  x0_u = tweedie_denoise(sde, score_fn, _first_order_update(sde, x, t, u, x0), u)
  return _first_order_update(sde, x, t, t_next, (1 - 0.5 / r) * x0 + (0.5 / r) * x0_u), memory


def get_ddim_sampler(sde: sde_lib.SDE, shape, num_steps=50, eta=0.0, grid="uniform",
                     eps=1e-3, denoise=True):
  """DDIM (Song, Meng & Ermon, 2021) on any linear SDE; num_steps evaluations."""
  step = functools.partial(ddim_step, eta=eta)
  return grid_sampler(sde, shape, step, num_steps, grid, eps, denoise=denoise)


def get_edm_sampler(sde: sde_lib.SDE, shape, num_steps=18, grid="edm", eps=1e-3, rho=7.0,
                    s_churn=0.0, s_tmin=0.0, s_tmax=float("inf"), s_noise=1.0, denoise=True):
  """Karras et al. (2022) Algorithm 2 (Heun, 2 evaluations per step; churn optional,
  gamma = min(s_churn / num_steps, sqrt(2) - 1))."""
  step = functools.partial(edm_heun_step, gamma_max=min(s_churn / num_steps, math.sqrt(2.0) - 1.0),
                           s_tmin=s_tmin, s_tmax=s_tmax, s_noise=s_noise)
  return grid_sampler(sde, shape, step, num_steps, grid, eps, 2, rho=rho, denoise=denoise)


def get_dpm_solver_sampler(sde: sde_lib.SDE, shape, num_steps=20, grid="logsnr", eps=1e-3,
                           denoise=True):
  """DPM-Solver++(2M) (Lu et al., 2022, Algorithm 2): multistep, second order."""
  return grid_sampler(sde, shape, dpm_solver_2m_step, num_steps, grid, eps,
                      init_memory=multistep_memory, denoise=denoise)


def get_dpm_solver_sde_sampler(sde: sde_lib.SDE, shape, num_steps=20, grid="logsnr",
                               eps=1e-3, eta=1.0, denoise=True):
  """SDE-DPM-Solver++(2M): the stochastic 2M step (eta = 1 follows the reverse SDE;
  0 < eta < 1 interpolates to the ODE solver)."""
  step = functools.partial(dpm_solver_2m_step, eta=eta)
  return grid_sampler(sde, shape, step, num_steps, grid, eps, init_memory=multistep_memory,
                      denoise=denoise)


def get_dpm_solver_3m_sampler(sde: sde_lib.SDE, shape, num_steps=20, grid="logsnr",
                              eps=1e-3, denoise=True):
  """DPM-Solver++(3M): multistep, third-order steps (see dpm_solver_3m_step)."""
  return grid_sampler(sde, shape, dpm_solver_3m_step, num_steps, grid, eps,
                      init_memory=multistep_memory, denoise=denoise)


def get_dpm_solver_2s_sampler(sde: sde_lib.SDE, shape, num_steps=10, grid="logsnr",
                              eps=1e-3, denoise=True):
  """DPM-Solver++(2S) with r = 1/2: single-step, second order; 2 num_steps evaluations."""
  step = functools.partial(dpm_solver_2s_step, eps=eps)
  return grid_sampler(sde, shape, step, num_steps, grid, eps, 2, denoise=denoise)


def consistency_step(sde, score_fn, z, x, t, t_next, memory, eps=1e-3):
  """One step of multistep consistency sampling (Song et al., 2023, Algorithm 1), through
  the score's denoiser: x_eps = alpha(eps) D(x, t) (D = tweedie_denoise; for a consistency
  function f wrapped by consistency.as_score_fn, alpha(eps) D = f(x, t)), then fresh noise
  from eps to t_next, x_next ~ p(x_{t_next} | x_eps) (none when t_next = eps)."""
  b = lambda v: batch_broadcast(v, x)
  eps_t = jnp.full_like(t, eps)
  x_eps = b(sde.marginal(eps_t)[0]) * tweedie_denoise(sde, score_fn, x, t)
  a, v = sde.transition(t_next, eps_t)
  return b(a) * x_eps + b(jnp.sqrt(jnp.maximum(v, 0.0))) * z, memory


def get_consistency_sampler(sde: sde_lib.SDE, shape, num_steps=1, grid="edm", eps=1e-3,
                            rho=7.0):
  """Multistep consistency sampling: the consistency function at the num_steps times
  time_grid(sde, num_steps, grid, eps, rho)[:-1], T first, re-noised in between; returns
  x_eps after num_steps evaluations (1: the one-step sample f(x_T, T)). Given an ordinary
  diffusion model's score it runs the same loop on its denoiser, E[x_0 | x_t], which is not
  a consistency function: few steps then give blurred means, not samples."""
  step = functools.partial(consistency_step, eps=eps)
  return grid_sampler(sde, shape, step, num_steps, grid, eps, rho=rho, denoise=False)


# Every sampler factory, called as factory(sde, shape, **settings): a config's
# `sampling.<name>` holds exactly the settings its factory accepts.
SAMPLERS = {"pc": get_pc_sampler, "ode": get_ode_sampler, "ddim": get_ddim_sampler,
            "edm_heun": get_edm_sampler, "dpm_solver_2m": get_dpm_solver_sampler,
            "dpm_solver_2m_sde": get_dpm_solver_sde_sampler, "dpm_solver_3m": get_dpm_solver_3m_sampler,
            "dpm_solver_2s": get_dpm_solver_2s_sampler, "consistency": get_consistency_sampler}

"""Exact log-likelihoods through the probability-flow ODE (Song et al., 2021, App. D).

Along the probability-flow ODE dx/dt = f~(x, t), the log-density obeys
d log p_t(x_t) / dt = -div f~(x_t, t), so

    log p_eps(x) = log p_T(x_T) + int_eps^T div f~(x_t, t) dt,

with p_T replaced by the SDE's prior. The state (x, integral) is solved from eps to T
on the device with diffrax's adaptive Dormand-Prince 5(4). The divergence is exact
(trace of the Jacobian: D Jacobian-vector products, for low dimensions) or
Hutchinson's v^T J v with one probe v per example held fixed along the path.
"""
import math

import diffrax
import jax
import jax.numpy as jnp

import divergence
import sde_lib

HUTCHINSON_TYPES = ("rademacher", "gaussian", "exact")


def get_likelihood_fn(sde: sde_lib.SDE, hutchinson_type="rademacher", rtol=1e-5, atol=1e-5,
                      eps=1e-5, max_steps=4096):
  """Returns loglik_fn(key, score_fn, x [B, ...]) -> (logp [B] nats, z [B, ...], nfe).

  `nfe` counts evaluations of the augmented vector field (each is one score
  evaluation with its Jacobian-vector product(s)); `z` is x mapped to time T.
  """
  if hutchinson_type not in HUTCHINSON_TYPES:
    raise ValueError(f"unknown hutchinson_type {hutchinson_type!r}; "
                     f"valid choices: {list(HUTCHINSON_TYPES)}")

  def loglik_fn(key, score_fn, x):
    rsde = sde.reverse(score_fn, probability_flow=True)
    probe = (None if hutchinson_type == "exact"
             else divergence.sample_probe(key, x.shape, hutchinson_type))

    def vector_field(t, state, args):
      del args
      x, _ = state
      drift_fn = lambda y: rsde.sde(y, jnp.full((y.shape[0],), t, y.dtype))[0]
      if probe is None:
        return drift_fn(x), divergence.exact(drift_fn, x)
      drift, jvp = jax.jvp(drift_fn, (x,), (probe,))
      return drift, jnp.sum(jnp.reshape(jvp * probe, (x.shape[0], -1)), axis=-1)

    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field), diffrax.Dopri5(), t0=eps, t1=sde.T, dt0=None,
        y0=(x, jnp.zeros((x.shape[0],), x.dtype)),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol), max_steps=max_steps)
    z, integral = solution.ys[0][-1], solution.ys[1][-1]
    return sde.prior_logp(z) + integral, z, 6 * solution.stats["num_steps"] + 1

  return loglik_fn


def get_sde_bound_fn(sde: sde_lib.SDE, eps=1e-5, num_draws=64, reference_std=1.0):
  """Returns bound_fn(key, score_fn, x [B, ...]) -> (bound [B] nats, se [B]): Song et al.
  (2021b, Thm. 2)'s upper bound on -log p(x) of the reverse SDE's model started from
  the prior, by Monte Carlo over `num_draws` draws per example (se: their standard error).

  With x_t | x_0 = x ~ N(a x, v I) the SDE's transition from time 0 (`sde.transition`),
  z its noise and D the dimension,

    bound(x) = -E log prior(x_T) - D int_eps^T f dt
               + 1/2 int_eps^T E[g^2 (||s(x_t, t)||^2 + 2 s . z / sqrt(v))] dt,

  the last integrand being g^2 (||s - c||^2 - ||c||^2) for the conditional score
  c = -z / sqrt(v), and -int div f dt = -D int f dt = -D log(a(T) / a(eps)). Times are drawn
  uniformly in the transition's log-SNR lambda = log(a / sqrt(v)), whose density
  -d lambda / dt = g^2 / (2 v) cancels the integrand's 1 / v. With the exact score the
  bound is -log p_0(x) + E[log p_T(x_T) - log prior(x_T) | x_0 = x]: tight up to the
  prior's mismatch. The integral starts at eps (the networks' smallest time); for data
  with a smooth density the omitted [0, eps] is O(v(eps)).

  Control variates (zero mean, so the estimate stays unbiased for any data): for data
  N(0, reference_std^2 I) and its exact score the integrand u = ||sqrt(v) s||^2 +
  2 sqrt(v) s . z has the part (rho^2 - 2 rho) ||z||^2 and the mean -D rho, with
  rho = v / (a^2 reference_std^2 + v) = 1 / (1 + reference_std^2 e^(2 lambda)); adding
  (2 rho - rho^2)(||z||^2 - D) + D rho and subtracting D int rho d lambda (closed form)
  removes them (per-draw variance 6x lower on the 2-D test mixture, reference_std 1).
  """
  time_zero = jnp.zeros(())

  def transition_log_snr(t):
    a, v = sde.transition(t, time_zero)
    return jnp.log(a) - 0.5 * jnp.log(v)

  with jax.ensure_compile_time_eval():
    lam_lo, lam_hi = transition_log_snr(jnp.asarray(sde.T)), transition_log_snr(jnp.asarray(eps))
    a_ratio = sde.transition(jnp.asarray(sde.T), time_zero)[0] / sde.transition(
        jnp.asarray(eps), time_zero)[0]

  def rho_integral(lam):    # int rho d lambda = lambda - log(1 + r^2 e^(2 lambda)) / 2
    return lam - 0.5 * jnp.logaddexp(0.0, 2 * lam + 2 * math.log(reference_std))

  def bound_fn(key, score_fn, x):
    batch, dim = x.shape[0], math.prod(x.shape[1:])
    a_T, v_T = sde.transition(jnp.full((batch,), sde.T), jnp.zeros((batch,)))

    def one_draw(k):
      k_lam, k_z, k_T = jax.random.split(k, 3)
      lam = jax.random.uniform(k_lam, (batch,), minval=lam_lo, maxval=lam_hi)
      t = sde_lib.invert_decreasing(transition_log_snr, lam, eps, sde.T)
      a, v = sde.transition(t, jnp.zeros_like(t))
      z = jax.random.normal(k_z, x.shape)
      std = sde_lib.batch_broadcast(jnp.sqrt(v), x)
      s = score_fn(sde_lib.batch_broadcast(a, x) * x + std * z, t)
      per_example = lambda u: jnp.sum(jnp.reshape(u, (batch, -1)), axis=-1)
      rho = jax.nn.sigmoid(-2 * lam - 2 * math.log(reference_std))
      z_sq = per_example(z**2)
      integrand = (per_example(std**2 * s**2 + 2 * std * s * z)
                   + (2 * rho - rho**2) * (z_sq - dim) + dim * rho)
      integral = (lam_hi - lam_lo) * integrand
      x_T = (sde_lib.batch_broadcast(a_T, x) * x + sde_lib.batch_broadcast(jnp.sqrt(v_T), x)
             * jax.random.normal(k_T, x.shape))
      return integral - sde.prior_logp(x_T)

    draws = jax.lax.map(one_draw, jax.random.split(key, num_draws))   # [num_draws, B]
    rho_term = dim * (rho_integral(lam_hi) - rho_integral(lam_lo))
    bound = jnp.mean(draws, axis=0) - rho_term - dim * jnp.log(a_ratio)
    return bound, jnp.std(draws, axis=0, ddof=1) / math.sqrt(num_draws)

  return bound_fn


def dequantize(key: jax.Array, pixels: jax.Array, n_bits: int = 8) -> jax.Array:
  """Uniform dequantization of integer pixels in {0, ..., 2^n_bits - 1} to [0, 1):
  u = (pixels + U[0, 1)) / 2^n_bits."""
  noise = jax.random.uniform(key, pixels.shape)
  return (pixels.astype(jnp.float32) + noise) / 2**n_bits


def bits_per_dim(logp: jax.Array, dim: int, scaler_log_det: float = 0.0, n_bits: int = 8):
  """Bits per dimension [B] of discrete data from the model's log-density, term by term:

  1. The model works on y = scaler(u) for dequantized u in [0, 1)^D (`dequantize`).
     Change of variables: log p(u) = log p(y) + log |det dy/du|; for the centering
     scaler y = 2u - 1 that is `scaler_log_det` = D log 2 (0 for the identity).
  2. u = v / 2^n_bits with v = pixels + U[0, 1) in [0, 2^n_bits)^D, so
     log p(v) = log p(u) - D n_bits log 2. The dequantized density p(v) lower-bounds
     the discrete likelihood: E_U log p(v) <= log P(pixels) (Theis et al., 2016).
  3. bits/dim = -log p(v) / (D log 2) = -log p(u) / (D log 2) + n_bits.

  The "+ 8" that score_sde adds without comment is this n_bits term.
  """
  log_p_u = logp + scaler_log_det
  return -log_p_u / (dim * math.log(2.0)) + n_bits

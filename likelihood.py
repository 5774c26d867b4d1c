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

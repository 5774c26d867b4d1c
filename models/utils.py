"""Network output -> score: the one place that knows parameterizations.

A network is called as `apply_fn(params, x_in, c_noise)` with, by `noise_conditioning`,
  "log_sigma": c_noise = log sigma(t)   (the noise level, defined for every SDE), or
  "time":      c_noise = 999 t / T      (the timestep index of a 1000-step DDPM chain, for
                                        positional embeddings; score_sde's label of
                                        continuous VP models, whatever N or the number of
                                        sampling steps: a network sees the labels it was
                                        trained on),
  "level_index": c_noise = (N - 1)(1 - t / T)  (the index of sigma(t) among the N noise
                                        levels sigma_max ... sigma_min, counting down:
                                        score_sde's label of discretely trained VE
                                        networks, an integer at the grid times
                                        t_i = T (1 - i / (N - 1))),
and
  x_in = x / sqrt(alpha(t)^2 + sigma(t)^2)   if `scale_input`, else x
(the input scaling keeps the network's input at unit scale for data of unit scale,
as EDM's c_in), then x_in -> 2 x_in - 1 if `center_input` (score_sde's networks map
[0, 1] data to [-1, 1] themselves when `data.centered` is False). Its output becomes a
score by `parameterization`:
  "noise"  (epsilon prediction, DDPM):  score = -output / sigma(t)
  "scaled_score" (sigma times the score, score_sde's `scale_by_sigma` VE networks):
                                        score = output / sigma(t)
  "score"  (direct):                    score = output
  "data"   (x_0 prediction, EDM's D):   score = (alpha(t) output - x) / sigma(t)^2
  "edm"    (Karras et al., 2022, preconditioned, for any linear SDE): in the frame
           x_hat = x / alpha with sigma_hat = sigma / alpha and s_d = sigma_data,
             c_skip = s_d^2 / (sigma_hat^2 + s_d^2)
             c_out  = sigma_hat s_d / sqrt(sigma_hat^2 + s_d^2)
             c_in   = 1 / sqrt(sigma_hat^2 + s_d^2)       (replaces `scale_input`)
             D      = c_skip x_hat + c_out output(c_in x_hat, c_noise)
           and score = (alpha D - x) / sigma^2. Where alpha -> 0 the x_0 estimate D is
           c_out output ~ s_d output, bounded, whereas "noise" gives x_0 = (x - sigma
           output) / alpha, which multiplies the network's error by sigma / alpha.
  "v"      (v prediction, Salimans & Ho, 2022), in the variance-preserving frame
           a = alpha / r, b = sigma / r, r = sqrt(alpha^2 + sigma^2) (for VP, r = 1):
           v = a z - b x_0, so eps_hat = b x / r + a output and score = -eps_hat / sigma
  "flow"   (the flow-matching velocity, d/dt of alpha x_0 + sigma z): output = f x -
           g^2 s / 2, the probability-flow drift, so score = 2 (f x - output) / g^2; for
           rectified flow the target is z - x_0.
"""
from typing import Any, Callable

import jax
import jax.numpy as jnp

import sde_lib

batch_broadcast = sde_lib.batch_broadcast
PARAMETERIZATIONS = ("noise", "scaled_score", "score", "data", "edm", "v", "flow")
NOISE_CONDITIONINGS = ("log_sigma", "time", "level_index")
TIME_LABEL_SCALE = 999.0


def get_score_fn(apply_fn: Callable[..., jax.Array], params: Any, sde: sde_lib.SDE,
                 parameterization: str = "noise", scale_input: bool = True,
                 noise_conditioning: str = "log_sigma", sigma_data: float = 0.5,
                 center_input: bool = False):
  """Returns score_fn(x [B, ...], t [B]) -> [B, ...] for a network `apply_fn`."""
  if parameterization not in PARAMETERIZATIONS:
    raise ValueError(f"unknown parameterization {parameterization!r}; "
                     f"valid choices: {list(PARAMETERIZATIONS)}")
  if noise_conditioning not in NOISE_CONDITIONINGS:
    raise ValueError(f"unknown noise_conditioning {noise_conditioning!r}; "
                     f"valid choices: {list(NOISE_CONDITIONINGS)}")

  def score_fn(x, t):
    alpha, sigma = sde.marginal(t)
    if noise_conditioning == "log_sigma":
      c_noise = jnp.log(sigma)
    elif noise_conditioning == "time":
      c_noise = TIME_LABEL_SCALE * t / sde.T
    else:
      c_noise = (sde.N - 1) * (1.0 - t / sde.T)
    if parameterization == "edm":
      sigma_hat = sigma / alpha
      c_skip = sigma_data**2 / (sigma_hat**2 + sigma_data**2)
      c_out = sigma_hat * sigma_data / jnp.sqrt(sigma_hat**2 + sigma_data**2)
      c_in = 1.0 / jnp.sqrt(sigma_hat**2 + sigma_data**2)
      x_hat = x / batch_broadcast(alpha, x)
      out = apply_fn(params, batch_broadcast(c_in, x) * x_hat, c_noise)
      denoised = batch_broadcast(c_skip, x) * x_hat + batch_broadcast(c_out, x) * out
      return (batch_broadcast(alpha, x) * denoised - x) / batch_broadcast(sigma**2, x)
    x_in = x / batch_broadcast(jnp.sqrt(alpha**2 + sigma**2), x) if scale_input else x
    out = apply_fn(params, 2 * x_in - 1 if center_input else x_in, c_noise)
    if parameterization == "noise":
      return -out / batch_broadcast(sigma, x)
    if parameterization == "scaled_score":
      return out / batch_broadcast(sigma, x)
    if parameterization == "score":
      return out
    if parameterization == "v":
      r = jnp.sqrt(alpha**2 + sigma**2)
      eps_hat = batch_broadcast(sigma / r**2, x) * x + batch_broadcast(alpha / r, x) * out
      return -eps_hat / batch_broadcast(sigma, x)
    if parameterization == "flow":
      f, g = sde.coefficients(t)
      return 2.0 * (batch_broadcast(f, x) * x - out) / batch_broadcast(g**2, x)
    return (batch_broadcast(alpha, x) * out - x) / batch_broadcast(sigma**2, x)

  return score_fn

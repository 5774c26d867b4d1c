"""Network output -> score: the one place that knows parameterizations.

A network is called as `apply_fn(params, x_in, c_noise)` with
  c_noise = log sigma(t)               (the noise level, defined for every SDE), and
  x_in = x / sqrt(alpha(t)^2 + sigma(t)^2)   if `scale_input`, else x
(the input scaling keeps the network's input at unit scale for data of unit scale,
as EDM's c_in). Its output becomes a score by `parameterization`:
  "noise"  (epsilon prediction, DDPM):  score = -output / sigma(t)
  "score"  (direct):                    score = output
  "data"   (x_0 prediction, EDM's D):   score = (alpha(t) output - x) / sigma(t)^2
"""
from typing import Any, Callable

import jax
import jax.numpy as jnp

import sde_lib

batch_broadcast = sde_lib.batch_broadcast
PARAMETERIZATIONS = ("noise", "score", "data")


def get_score_fn(apply_fn: Callable[..., jax.Array], params: Any, sde: sde_lib.SDE,
                 parameterization: str = "noise", scale_input: bool = True):
  """Returns score_fn(x [B, ...], t [B]) -> [B, ...] for a network `apply_fn`."""
  if parameterization not in PARAMETERIZATIONS:
    raise ValueError(f"unknown parameterization {parameterization!r}; "
                     f"valid choices: {list(PARAMETERIZATIONS)}")

  def score_fn(x, t):
    alpha, sigma = sde.marginal(t)
    x_in = x / batch_broadcast(jnp.sqrt(alpha**2 + sigma**2), x) if scale_input else x
    out = apply_fn(params, x_in, jnp.log(sigma))
    if parameterization == "noise":
      return -out / batch_broadcast(sigma, x)
    if parameterization == "score":
      return out
    return (batch_broadcast(alpha, x) * out - x) / batch_broadcast(sigma**2, x)

  return score_fn

"""Layers shared by the score networks."""
import math

import jax
import jax.numpy as jnp


def sinusoidal_embedding(c_noise: jax.Array, dim: int, max_period: float = 10_000.0):
  """Transformer-style embedding [B, dim] of a scalar noise condition c_noise [B]."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half) / half)
  angles = c_noise[:, None] * freqs[None, :]
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)

"""Normalization layers: GroupNorm (the U-Nets') and InstanceNorm++ (Song & Ermon 2019,
the NCSN RefineNets').

InstanceNorm++ normalizes each channel over H x W, then adds back the channel means,
standardized across channels, scaled by alpha: it keeps the colour information that
plain instance normalization removes.
"""
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp


class GroupNorm(nn.Module):
  """Group normalization (Wu & He, 2018) of x [B, ..., C] over the positions ... and the
  C / num_groups channels of each group, per example: flax.linen.GroupNorm's parameters
  ("scale", "bias", [C]), defaults and values (float32 moments, variance as E[x^2] -
  E[x]^2), so checkpoints move between the two.

  The moments are taken per channel over the positions first, then averaged over each
  group's channels: on XLA:CPU with YNNPACK reductions (infra/xla_cpu.py) that is 2-4x faster
  forward and backward than flax's single reduction over (positions, group channels) at
  the U-Nets' shapes (benchmarks/README.md).
  """
  num_groups: int = 32
  epsilon: float = 1e-6
  dtype: Optional[Any] = None      # output dtype; None: x's promoted with float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    channels = x.shape[-1]
    if self.num_groups <= 0 or channels % self.num_groups:
      raise ValueError(f"GroupNorm: num_groups={self.num_groups} does not divide the "
                       f"{channels} channels")
    scale = self.param("scale", nn.initializers.ones, (channels,))
    bias = self.param("bias", nn.initializers.zeros, (channels,))
    x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    positions = tuple(range(1, x.ndim - 1))

    def per_group(channel_moment):                     # [B, C] -> [B, C], group means
      grouped = channel_moment.reshape(x.shape[0], self.num_groups, -1).mean(-1)
      return jnp.repeat(grouped, channels // self.num_groups, axis=-1)

    mean = per_group(jnp.mean(x32, axis=positions))
    var = jnp.maximum(per_group(jnp.mean(jnp.square(x32), axis=positions)) - mean**2, 0.0)
    at_positions = lambda v: v.reshape(-1, *(1,) * len(positions), channels)
    multiplier = jax.lax.rsqrt(var + self.epsilon) * scale[None, :]
    y = (x32 - at_positions(mean)) * at_positions(multiplier) + at_positions(bias)
    return y.astype(self.dtype or x32.dtype)


def _scale_init(key, shape, dtype=jnp.float32):
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def _instance_norm_plus(x):
  """(normalized x, standardized channel means) for x [B, H, W, C]."""
  means = x.mean(axis=(1, 2))                                        # [B, C]
  m, v = means.mean(-1, keepdims=True), means.var(-1, keepdims=True)
  means_plus = (means - m) / jnp.sqrt(v + 1e-5)
  h = (x - means[:, None, None, :]) / jnp.sqrt(x.var(axis=(1, 2), keepdims=True) + 1e-5)
  return h, means_plus[:, None, None, :]


class InstanceNormPlus(nn.Module):
  """InstanceNorm++: gamma * (h + alpha * means_plus) + beta, per channel."""
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, cond: Optional[jax.Array] = None) -> jax.Array:
    del cond  # unconditional
    c = x.shape[-1]
    h, means_plus = _instance_norm_plus(x.astype(jnp.float32))
    alpha = self.param("alpha", _scale_init, (c,))[None, None, None, :]
    gamma = self.param("gamma", _scale_init, (c,))[None, None, None, :]
    beta = self.param("beta", nn.initializers.zeros, (c,))[None, None, None, :]
    return (gamma * (h + alpha * means_plus) + beta).astype(self.dtype)


class ConditionalInstanceNormPlus(nn.Module):
  """InstanceNorm++ whose gamma, alpha, beta are functions of a noise embedding
  cond [B, E] (NCSN's conditional version, with a Dense layer in place of the lookup
  table of one row per discrete noise level, so any continuous noise level works)."""
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, cond: jax.Array) -> jax.Array:
    c = x.shape[-1]
    h, means_plus = _instance_norm_plus(x.astype(jnp.float32))
    init = nn.initializers.normal(0.02)
    gamma, alpha, beta = jnp.split(nn.Dense(3 * c, kernel_init=init)(cond), 3, axis=-1)
    gamma, alpha = gamma + 1.0, alpha + 1.0
    out = gamma[:, None, None, :] * (h + alpha[:, None, None, :] * means_plus)
    return (out + beta[:, None, None, :]).astype(self.dtype)


class LevelInstanceNormPlus(nn.Module):
  """NCSN's conditional InstanceNorm++ as published (Song & Ermon, 2019): gamma, alpha,
  beta are row `level` [B] (int) of a table of `num_levels` rows, one per noise level
  (gamma, alpha initialized at N(1, 0.02^2), beta at 0, as there)."""
  num_levels: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, level: jax.Array) -> jax.Array:
    c = x.shape[-1]
    h, means_plus = _instance_norm_plus(x.astype(jnp.float32))

    def init(key, shape, dtype=jnp.float32):
      scales = 1.0 + 0.02 * jax.random.normal(key, (shape[0], 2 * c), dtype)
      return jnp.concatenate([scales, jnp.zeros((shape[0], c), dtype)], axis=-1)

    table = self.param("embedding", init, (self.num_levels, 3 * c))
    gamma, alpha, beta = (v[:, None, None, :] for v in jnp.split(table[level], 3, axis=-1))
    return (gamma * (h + alpha * means_plus) + beta).astype(self.dtype)

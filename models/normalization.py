"""Instance normalization with mean correction (InstanceNorm++, Song & Ermon 2019), the
normalization of the NCSN RefineNets.

InstanceNorm++ normalizes each channel over H x W, then adds back the channel means,
standardized across channels, scaled by alpha: it keeps the colour information that
plain instance normalization removes.
"""
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp


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

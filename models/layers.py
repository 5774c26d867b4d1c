"""Layers shared by the score networks (NHWC images; `dtype` is the compute dtype,
parameters stay float32).

Initializers follow the published models: DDPM's `default_init` (fan-average uniform
variance scaling; scale 0 means "start at zero", 1e-10 in practice) for DDPM / NCSN++,
and PyTorch's default (fan-in uniform, variance 1/3) for the NCSN RefineNets.
"""
import math
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from models import normalization
from models import up_or_down_sampling as updown

Dtype = Any


def sinusoidal_embedding(c_noise: jax.Array, dim: int, max_period: float = 10_000.0,
                         freq_shift: float = 0.0):
  """Transformer-style embedding [B, dim] of a scalar noise condition c_noise [B]:
  [sin, cos](c f_i), f_i = max_period^(-i / (dim / 2 - freq_shift)). DDPM's positional
  embedding is freq_shift = 1 (the lowest frequency exactly 1 / max_period)."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half) / (half - freq_shift))
  angles = c_noise[:, None] * freqs[None, :]
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


def add_label_embedding(emb: jax.Array, labels: Optional[jax.Array], num_classes: int):
  """emb [B, E] + a learned embedding of labels [B] in {0, ..., num_classes}, where
  num_classes is the "null" label of classifier-free guidance (labels None: all null).
  Call inside a compact module. An unconditional network (num_classes 0) takes no labels."""
  if not num_classes:
    if labels is not None:
      raise ValueError("labels given to an unconditional network (model.num_label_classes = 0)")
    return emb
  if labels is None:
    labels = jnp.full(emb.shape[:1], num_classes, jnp.int32)
  return emb + nn.Embed(num_classes + 1, emb.shape[-1], name="label_embedding")(labels).astype(
      emb.dtype)


def default_init(scale: float = 1.0):
  """DDPM's initializer: variance_scaling(scale, fan_avg, uniform); scale 0 -> 1e-10."""
  return nn.initializers.variance_scaling(scale or 1e-10, "fan_avg", "uniform")


def ncsn_init(scale: float = 1.0):
  """PyTorch's default conv initializer (NCSN / NCSNv2): fan-in uniform, variance 1/3."""
  return nn.initializers.variance_scaling((scale or 1e-10) / 3, "fan_in", "uniform")


def conv(features: int, size: int = 3, init_scale: float = 1.0, stride: int = 1,
         dilation: int = 1, use_bias: bool = True, dtype: Dtype = jnp.float32,
         init: Callable = default_init, name: Optional[str] = None) -> nn.Conv:
  """A SAME-padded size x size convolution with the DDPM (or a given) initializer."""
  return nn.Conv(features, (size, size), strides=(stride, stride), padding="SAME",
                 kernel_dilation=(dilation, dilation), use_bias=use_bias,
                 kernel_init=init(init_scale), dtype=dtype, name=name)


def dense(features: int, init_scale: float = 1.0, dtype: Dtype = jnp.float32) -> nn.Dense:
  """A dense layer on the last axis (DDPM's "NIN" 1x1 layer) with `default_init`."""
  return nn.Dense(features, kernel_init=default_init(init_scale), dtype=dtype)


def group_norm(channels: int, num_groups: Optional[int] = None, dtype: Dtype = jnp.float32):
  """GroupNorm with 32 groups, or min(C / 4, 32) (NCSN++) when num_groups is None."""
  groups = num_groups or min(channels // 4, 32)
  return normalization.GroupNorm(num_groups=min(groups, channels), epsilon=1e-6, dtype=dtype)


class GaussianFourierProjection(nn.Module):
  """[sin, cos](2 pi c W) with fixed W ~ N(0, scale^2) [size]: c [B] -> [B, 2 size].
  W is a parameter (as in the published models, so checkpoints and counts match) that
  receives no gradient."""
  embedding_size: int = 256
  scale: float = 1.0

  @nn.compact
  def __call__(self, c: jax.Array) -> jax.Array:
    w = self.param("W", nn.initializers.normal(stddev=self.scale), (self.embedding_size,))
    proj = c[:, None] * jax.lax.stop_gradient(w)[None, :] * 2 * jnp.pi
    return jnp.concatenate([jnp.sin(proj), jnp.cos(proj)], axis=-1)


class AttnBlock(nn.Module):
  """Single-head self-attention over all H x W positions (DDPM), residual."""
  skip_rescale: bool = False
  num_groups: Optional[int] = 32
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, h, w, c = x.shape
    y = group_norm(c, self.num_groups, self.dtype)(x).reshape(b, h * w, c)
    q, k, v = (dense(c, 0.1, self.dtype)(y) for _ in range(3))
    weights = jax.nn.softmax(jnp.einsum("bic,bjc->bij", q, k) * c**-0.5, axis=-1)
    y = dense(c, 0.0, self.dtype)(jnp.einsum("bij,bjc->bic", weights, v)).reshape(b, h, w, c)
    return (x + y) / np.sqrt(2.0) if self.skip_rescale else x + y


class Upsample(nn.Module):
  """x2 upsampling: nearest or FIR, optionally followed by (fused with) a 3x3 conv."""
  out_ch: Optional[int] = None
  with_conv: bool = False
  fir: bool = False
  fir_kernel: Sequence[int] = (1, 3, 3, 1)
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    out_ch = self.out_ch or x.shape[-1]
    if not self.fir:
      h = updown.naive_upsample_2d(x)
      return conv(out_ch, dtype=self.dtype)(h) if self.with_conv else h
    if not self.with_conv:
      return updown.upsample_2d(x, self.fir_kernel)
    w = self.param("kernel", default_init(), (3, 3, x.shape[-1], out_ch))
    b = self.param("bias", nn.initializers.zeros, (out_ch,))
    return updown.upsample_conv_2d(x, w.astype(self.dtype), self.fir_kernel) + b.astype(self.dtype)[None, None, None, :]


class Downsample(nn.Module):
  """/2 downsampling: average pool or FIR, optionally with (fused into) a 3x3 conv."""
  out_ch: Optional[int] = None
  with_conv: bool = False
  fir: bool = False
  fir_kernel: Sequence[int] = (1, 3, 3, 1)
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    out_ch = self.out_ch or x.shape[-1]
    if not self.fir:
      if self.with_conv:
        return conv(out_ch, stride=2, dtype=self.dtype)(x)
      return updown.naive_downsample_2d(x)
    if not self.with_conv:
      return updown.downsample_2d(x, self.fir_kernel)
    w = self.param("kernel", default_init(), (3, 3, x.shape[-1], out_ch))
    b = self.param("bias", nn.initializers.zeros, (out_ch,))
    return updown.conv_downsample_2d(x, w.astype(self.dtype), self.fir_kernel) + b.astype(self.dtype)[None, None, None, :]


class ResnetBlockDDPM(nn.Module):
  """DDPM residual block: GN, act, conv, + Dense(act(temb)), GN, act, dropout, conv
  (initialized at zero); a 1x1 (or 3x3) shortcut when the width changes."""
  act: Callable
  out_ch: Optional[int] = None
  conv_shortcut: bool = False
  dropout: float = 0.1
  skip_rescale: bool = False
  init_scale: float = 0.0
  num_groups: Optional[int] = 32
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, temb=None, train: bool = False):
    c = x.shape[-1]
    out_ch = self.out_ch or c
    h = self.act(group_norm(c, self.num_groups, self.dtype)(x))
    h = conv(out_ch, dtype=self.dtype)(h)
    if temb is not None:
      h = h + dense(out_ch, dtype=self.dtype)(self.act(temb))[:, None, None, :]
    h = self.act(group_norm(out_ch, self.num_groups, self.dtype)(h))
    h = nn.Dropout(self.dropout)(h, deterministic=not train)
    h = conv(out_ch, init_scale=self.init_scale, dtype=self.dtype)(h)
    if c != out_ch:
      x = conv(out_ch, dtype=self.dtype)(x) if self.conv_shortcut else dense(out_ch, 0.1, self.dtype)(x)
    return (x + h) / np.sqrt(2.0) if self.skip_rescale else x + h


class ResnetBlockBigGAN(nn.Module):
  """BigGAN-style residual block of NCSN++ / DDPM++, resampling inside the block
  (FIR or nearest / average) when `up` or `down`; 1x1 shortcut when the shape changes."""
  act: Callable
  up: bool = False
  down: bool = False
  out_ch: Optional[int] = None
  dropout: float = 0.1
  fir: bool = False
  fir_kernel: Sequence[int] = (1, 3, 3, 1)
  skip_rescale: bool = True
  init_scale: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, temb=None, train: bool = False):
    c = x.shape[-1]
    out_ch = self.out_ch or c
    h = self.act(group_norm(c, None, self.dtype)(x))
    if self.up:
      resample = (lambda v: updown.upsample_2d(v, self.fir_kernel)) if self.fir else updown.naive_upsample_2d
      h, x = resample(h), resample(x)
    elif self.down:
      resample = (lambda v: updown.downsample_2d(v, self.fir_kernel)) if self.fir else updown.naive_downsample_2d
      h, x = resample(h), resample(x)
    h = conv(out_ch, dtype=self.dtype)(h)
    if temb is not None:
      h = h + dense(out_ch, dtype=self.dtype)(self.act(temb))[:, None, None, :]
    h = self.act(group_norm(out_ch, None, self.dtype)(h))
    h = nn.Dropout(self.dropout)(h, deterministic=not train)
    h = conv(out_ch, init_scale=self.init_scale, dtype=self.dtype)(h)
    if c != out_ch or self.up or self.down:
      x = conv(out_ch, size=1, dtype=self.dtype)(x)
    return (x + h) / np.sqrt(2.0) if self.skip_rescale else x + h


ACTIVATIONS = {"swish": nn.swish, "silu": nn.silu, "elu": nn.elu, "relu": nn.relu,
               "lrelu": lambda x: nn.leaky_relu(x, negative_slope=0.2)}


def get_activation(name: str) -> Callable:
  if name not in ACTIVATIONS:
    raise ValueError(f"unknown nonlinearity {name!r}; valid choices: {sorted(ACTIVATIONS)}")
  return ACTIVATIONS[name]

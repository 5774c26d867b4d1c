"""The NCSN RefineNets (Song & Ermon 2019, 2020): a dilated ResNet encoder and
RefineNet decoder with InstanceNorm++.

NCSNv2 (`conditional=False`) is noise-unconditional: the network never sees the noise
level and its output is divided by sigma, which is the "noise" parameterization of
models/parameterizations.py. NCSN (`conditional=True`) conditions every normalization on the noise
level: as published (`noise_levels` = N > 0), by a table of one row of conditional
InstanceNorm++ parameters per level, looked up at round(c_noise), the level's index
(model.noise_conditioning = "level_index"); or (`noise_levels` = 0) by a Dense layer of
Fourier features of c_noise = log sigma, defined at every noise level. With
`num_label_classes`, a class label (embedding) conditions every normalization, added to
the noise features in the Fourier NCSN.

The published depths are the `LEVELS` rows: at 32-64 px (CIFAR-10, CelebA), 128 px
(LSUN) and 256 px, with nf = 128 they have the reference models' parameter counts; "ncsn"
is NCSN's (Song & Ermon, 2019, github.com/ermongroup/ncsn `CondRefineNetDilated`: its third
RefineBlock is nf wide, not 2 nf as in NCSNv2 and score_sde's re-implementation).
"""
import dataclasses
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from models import layers
from models import normalization

# Per resolution: (channel multipliers of the encoder levels, their dilations, the
# RefineNet widths at each level).
LEVELS = {
    "64": ((1, 2, 2, 2), (1, 1, 2, 4), (1, 2, 2, 2)),
    "128": ((1, 2, 2, 4, 4), (1, 1, 1, 2, 4), (1, 1, 2, 2, 4)),
    "256": ((1, 2, 2, 2, 4, 4), (1, 1, 1, 1, 2, 4), (1, 1, 2, 2, 2, 4)),
    "ncsn": ((1, 2, 2, 2), (1, 1, 2, 4), (1, 1, 2, 2)),
}


@dataclasses.dataclass(frozen=True)
class NCSNv2Config:
  nf: int = 128
  levels: str = "64"            # LEVELS: "64" up to 64 px, "128" for 96-128 px, "256"
  conditional: bool = False     # True: NCSN (v1), noise-conditional normalization
  noise_levels: int = 0         # NCSN: > 0, one row per level (as published); 0: Fourier
  num_label_classes: int = 0    # > 0: class-conditional normalization (n = the null label)
  nonlinearity: str = "elu"
  interpolation: str = "bilinear"
  dtype: str = "float32"

  def __post_init__(self):
    if self.levels not in LEVELS:
      raise ValueError(f"unknown model.levels {self.levels!r}; valid choices: {sorted(LEVELS)}")
    if self.noise_levels and (not self.conditional or self.num_label_classes):
      raise ValueError(f"model.noise_levels={self.noise_levels} (a table row per noise level) "
                       "needs model.conditional=True and model.num_label_classes=0")


def conv3x3(features, dilation=1, use_bias=True, dtype=jnp.float32):
  return layers.conv(features, 3, dilation=dilation, use_bias=use_bias, dtype=dtype,
                     init=layers.ncsn_init)


class ConvMeanPool(nn.Module):
  """A convolution, then 2x2 average pooling."""
  features: int
  size: int = 3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    h = layers.conv(self.features, self.size, dtype=self.dtype, init=layers.ncsn_init)(x)
    b, hh, ww, c = h.shape
    return h.reshape(b, hh // 2, 2, ww // 2, 2, c).mean(axis=(2, 4))


class ResidualBlock(nn.Module):
  """Pre-activation residual block; "down" halves the resolution, or, with a dilation,
  keeps it and dilates the convolutions instead (the NCSN encoder's last levels)."""
  features: int
  norm: Callable
  act: Callable
  down: bool = False
  dilation: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, cond):
    c = x.shape[-1]
    h = self.act(self.norm()(x, cond))
    if self.down:
      h = self.act(self.norm()(conv3x3(c, self.dilation, dtype=self.dtype)(h), cond))
      if self.dilation > 1:
        return (conv3x3(self.features, self.dilation, dtype=self.dtype)(h)
                + conv3x3(self.features, self.dilation, dtype=self.dtype)(x))
      return ConvMeanPool(self.features, dtype=self.dtype)(h) + ConvMeanPool(
          self.features, 1, dtype=self.dtype)(x)
    if c != self.features:
      x = (conv3x3(self.features, self.dilation, dtype=self.dtype)(x) if self.dilation > 1 else
           layers.conv(self.features, 1, dtype=self.dtype, init=layers.ncsn_init)(x))
    h = conv3x3(self.features, self.dilation, dtype=self.dtype)(h)
    h = self.act(self.norm()(h, cond))
    return x + conv3x3(self.features, self.dilation, dtype=self.dtype)(h)


class RefineBlock(nn.Module):
  """Residual conv units on each input, multi-resolution fusion to `shape`, chained
  residual pooling, and output residual conv units (3 at the last block)."""
  shape: Sequence[int]
  features: int
  norm: Callable
  act: Callable
  conditional: bool
  interpolation: str = "bilinear"
  end: bool = False
  dtype: Any = jnp.float32

  def _rcu(self, x, cond, features, n_blocks):
    for _ in range(n_blocks):
      residual = x
      for _ in range(2):
        x = conv3x3(features, use_bias=False, dtype=self.dtype)(self.act(self._norm(x, cond)))
      x = x + residual
    return x

  def _norm(self, x, cond):
    return self.norm()(x, cond) if self.conditional else x

  @nn.compact
  def __call__(self, xs, cond):
    hs = [self._rcu(x, cond, x.shape[-1], 2) for x in xs]
    if len(hs) == 1:
      h = hs[0]
    else:
      h = 0.0
      for x in hs:
        x = conv3x3(self.features, dtype=self.dtype)(self._norm(x, cond))
        h = h + jax.image.resize(x, (x.shape[0], *self.shape, x.shape[-1]), self.interpolation)
    # Chained residual pooling (max-pool in NCSNv2, average-pool in NCSN).
    h = self.act(h)
    path = h
    for _ in range(2):
      path = self._norm(path, cond)
      pool = nn.avg_pool if self.conditional else nn.max_pool
      path = conv3x3(self.features, use_bias=False, dtype=self.dtype)(
          pool(path, (5, 5), strides=(1, 1), padding="SAME"))
      h = h + path
    return self._rcu(h, cond, self.features, 3 if self.end else 1)


class NCSNv2(nn.Module):
  """(x [B, H, W, C], c_noise [B], train) -> [B, H, W, C]."""

  config: NCSNv2Config

  @nn.compact
  def __call__(self, x: jax.Array, c_noise: jax.Array, train: bool = False,
               labels=None) -> jax.Array:
    del train  # no dropout
    cfg = self.config
    dtype = jnp.dtype(cfg.dtype)
    act = layers.get_activation(cfg.nonlinearity)
    ch_mult, dilations, refine_mult = LEVELS[cfg.levels]
    cond: Optional[jax.Array] = None
    if cfg.conditional and cfg.noise_levels:     # the level's index: a table row
      cond = jnp.clip(jnp.round(c_noise), 0, cfg.noise_levels - 1).astype(jnp.int32)
    elif cfg.conditional:
      cond = layers.GaussianFourierProjection(cfg.nf, 16.0)(c_noise)
    if cfg.num_label_classes:   # the label conditions every normalization
      cond = layers.add_label_embedding(
          jnp.zeros((x.shape[0], 2 * cfg.nf)) if cond is None else cond, labels,
          cfg.num_label_classes)
    elif labels is not None:
      raise ValueError("labels given to an unconditional network (model.num_label_classes = 0)")
    if cond is None:
      norm = lambda: normalization.InstanceNormPlus(dtype=dtype)
    elif cfg.noise_levels:
      norm = lambda: normalization.LevelInstanceNormPlus(cfg.noise_levels, dtype=dtype)
    else:
      norm = lambda: normalization.ConditionalInstanceNormPlus(dtype=dtype)
    block = lambda features, **kw: ResidualBlock(features, norm, act, dtype=dtype, **kw)

    h = conv3x3(cfg.nf, dtype=dtype)(x.astype(dtype))
    h = block(cfg.nf)(h, cond)
    encoded = [block(cfg.nf)(h, cond)]
    for mult, dilation in zip(ch_mult[1:], dilations[1:]):
      h = block(cfg.nf * mult, down=True, dilation=dilation)(encoded[-1], cond)
      encoded.append(block(cfg.nf * mult, dilation=dilation)(h, cond))

    ref = None
    for level in reversed(range(len(encoded))):
      inputs = [encoded[level]] if ref is None else [encoded[level], ref]
      ref = RefineBlock(encoded[level].shape[1:3], cfg.nf * refine_mult[level], norm, act,
                        cfg.conditional, cfg.interpolation, end=level == 0, dtype=dtype)(inputs, cond)
    h = act(norm()(ref, cond))
    return conv3x3(x.shape[-1], dtype=dtype)(h).astype(jnp.float32)

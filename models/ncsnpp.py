"""NCSN++ and DDPM++ (Song et al., 2021): one U-Net family, told apart by its config.

NCSN++ uses BigGAN residual blocks with FIR resampling, a progressive input pyramid
and Gaussian Fourier features of log sigma; DDPM++ uses the same blocks without FIR,
no pyramid, and DDPM's positional embedding of the timestep 999 t. Both rescale
skip connections by 1/sqrt(2). Parameter counts at the published configurations equal
those of the reference models (tests/test_models.py lists them).

score_sde's `scale_by_sigma` (output divided by sigma) is the "noise" parameterization
of models/parameterizations.py (score = -output / sigma): networks here never see sigma.
"""
import dataclasses
import itertools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from models import layers

PROGRESSIVE = ("none", "output_skip", "residual")
PROGRESSIVE_INPUT = ("none", "input_skip", "residual")


@dataclasses.dataclass(frozen=True)
class NCSNppConfig:
  nf: int = 128
  ch_mult: Sequence[int] = (1, 2, 2, 2)
  num_res_blocks: int = 4
  attn_resolutions: Sequence[int] = (16,)
  dropout: float = 0.1
  resamp_with_conv: bool = True
  fir: bool = True
  fir_kernel: Sequence[int] = (1, 3, 3, 1)
  skip_rescale: bool = True
  resblock_type: str = "biggan"            # or "ddpm"
  progressive: str = "none"                # PROGRESSIVE
  progressive_input: str = "residual"      # PROGRESSIVE_INPUT
  progressive_combine: str = "sum"         # or "cat"
  embedding_type: str = "fourier"          # or "positional"
  fourier_scale: float = 16.0
  init_scale: float = 0.0
  nonlinearity: str = "swish"
  remat: bool = False
  dtype: str = "float32"
  num_label_classes: int = 0               # > 0: class-conditional (n = the null label)

  def __post_init__(self):
    for name, value, valid in (("resblock_type", self.resblock_type, ("biggan", "ddpm")),
                               ("progressive", self.progressive, PROGRESSIVE),
                               ("progressive_input", self.progressive_input, PROGRESSIVE_INPUT),
                               ("progressive_combine", self.progressive_combine, ("sum", "cat")),
                               ("embedding_type", self.embedding_type, ("fourier", "positional"))):
      if value not in valid:
        raise ValueError(f"unknown model.{name} {value!r}; valid choices: {list(valid)}")


class Combine(nn.Module):
  """Merges the input pyramid into the features: 1x1 conv of x, then sum or concat."""
  method: str = "sum"
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, y):
    h = layers.conv(y.shape[-1], size=1, dtype=self.dtype)(x)
    return h + y if self.method == "sum" else jnp.concatenate([h, y], axis=-1)


class NCSNpp(nn.Module):
  """(x [B, H, W, C], c_noise [B], train, labels [B] or None) -> [B, H, W, C]; labels
  of a class-conditional network enter as an embedding added to the noise embedding."""

  config: NCSNppConfig

  @nn.compact
  def __call__(self, x: jax.Array, c_noise: jax.Array, train: bool = False,
               labels=None) -> jax.Array:
    cfg = self.config
    dtype = jnp.dtype(cfg.dtype)
    act = layers.get_activation(cfg.nonlinearity)
    fir = dict(fir=cfg.fir, fir_kernel=tuple(cfg.fir_kernel), dtype=dtype)
    skip = (lambda a, b: (a + b) / np.sqrt(2.0)) if cfg.skip_rescale else (lambda a, b: a + b)
    if cfg.resblock_type == "ddpm":
      block, extra = layers.ResnetBlockDDPM, dict(num_groups=None)
    else:
      block, extra = layers.ResnetBlockBigGAN, dict(fir=cfg.fir, fir_kernel=tuple(cfg.fir_kernel))
    if cfg.remat:
      block = nn.remat(block, static_argnums=(3,))
    names = (f"ResnetBlock_{i}" for i in itertools.count())   # the same with remat
    resnet = lambda **kw: block(act=act, dropout=cfg.dropout, init_scale=cfg.init_scale,
                                skip_rescale=cfg.skip_rescale, dtype=dtype, name=next(names),
                                **extra, **kw)
    attention = lambda: layers.AttnBlock(skip_rescale=cfg.skip_rescale, num_groups=None, dtype=dtype)
    out_conv = lambda ch, h: layers.conv(ch, init_scale=cfg.init_scale, dtype=dtype)(
        act(layers.group_norm(h.shape[-1], None, dtype)(h)))

    if cfg.embedding_type == "fourier":
      temb = layers.GaussianFourierProjection(cfg.nf, cfg.fourier_scale)(c_noise)
    else:
      temb = layers.sinusoidal_embedding(c_noise, cfg.nf, freq_shift=1.0)
    temb = layers.dense(4 * cfg.nf)(temb)
    temb = layers.dense(4 * cfg.nf)(act(temb))
    temb = layers.add_label_embedding(temb, labels, cfg.num_label_classes).astype(dtype)

    x = x.astype(dtype)
    pyramid_in = x
    hs = [layers.conv(cfg.nf, dtype=dtype)(x)]
    for level, mult in enumerate(cfg.ch_mult):
      for _ in range(cfg.num_res_blocks):
        h = resnet(out_ch=cfg.nf * mult)(hs[-1], temb, train)
        if h.shape[1] in cfg.attn_resolutions:
          h = attention()(h)
        hs.append(h)
      if level == len(cfg.ch_mult) - 1:
        break
      if cfg.resblock_type == "ddpm":
        h = layers.Downsample(with_conv=cfg.resamp_with_conv, **fir)(hs[-1])
      else:
        h = resnet(down=True)(hs[-1], temb, train)
      if cfg.progressive_input == "input_skip":
        pyramid_in = layers.Downsample(with_conv=False, **fir)(pyramid_in)
        h = Combine(cfg.progressive_combine, dtype)(pyramid_in, h)
      elif cfg.progressive_input == "residual":
        pyramid_in = skip(layers.Downsample(out_ch=h.shape[-1], with_conv=True, **fir)(pyramid_in), h)
        h = pyramid_in
      hs.append(h)

    h = resnet()(hs[-1], temb, train)
    h = attention()(h)
    h = resnet()(h, temb, train)

    pyramid = None
    for level, mult in reversed(list(enumerate(cfg.ch_mult))):
      for _ in range(cfg.num_res_blocks + 1):
        h = resnet(out_ch=cfg.nf * mult)(jnp.concatenate([h, hs.pop()], axis=-1), temb, train)
      if h.shape[1] in cfg.attn_resolutions:
        h = attention()(h)
      if cfg.progressive == "output_skip":
        if pyramid is not None:
          pyramid = layers.Upsample(with_conv=False, **fir)(pyramid)
          pyramid = pyramid + out_conv(x.shape[-1], h)
        else:
          pyramid = out_conv(x.shape[-1], h)
      elif cfg.progressive == "residual":
        if pyramid is not None:
          pyramid = skip(layers.Upsample(out_ch=h.shape[-1], with_conv=True, **fir)(pyramid), h)
          h = pyramid
        else:
          pyramid = layers.conv(h.shape[-1], dtype=dtype)(
              act(layers.group_norm(h.shape[-1], None, dtype)(h)))
      if level != 0:
        if cfg.resblock_type == "ddpm":
          h = layers.Upsample(with_conv=cfg.resamp_with_conv, **fir)(h)
        else:
          h = resnet(up=True)(h, temb, train)
    assert not hs

    h = pyramid if cfg.progressive == "output_skip" else out_conv(x.shape[-1], h)
    return h.astype(jnp.float32)

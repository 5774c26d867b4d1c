"""The DDPM U-Net (Ho et al., 2020), as published: at CIFAR-10 (nf 128, ch_mult
(1, 2, 2, 2), 2 blocks, attention at 16x16) it has 35,746,307 parameters, the paper's
35.7M. Attention follows every residual block at an attention resolution, in the
down and the up path, as in the original TensorFlow model; score_sde's re-implementation
attends once per up level and has 35.2M (`attention_every_up_block=False`, for its
checkpoints).
"""
import dataclasses
import itertools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from models import layers


@dataclasses.dataclass(frozen=True)
class DDPMConfig:
  nf: int = 128
  ch_mult: Sequence[int] = (1, 2, 2, 2)
  num_res_blocks: int = 2
  attn_resolutions: Sequence[int] = (16,)
  dropout: float = 0.1
  resamp_with_conv: bool = True
  nonlinearity: str = "swish"
  num_groups: int = 32
  remat: bool = False          # jax.checkpoint each residual block (memory for compute)
  dtype: str = "float32"       # compute dtype ("bfloat16"); parameters stay float32
  num_label_classes: int = 0   # > 0: class-conditional (labels 0 .. n - 1, n = null)
  attention_every_up_block: bool = True   # False: once per up level (score_sde's, 35.2M)
  conditional: bool = True     # False: no timestep embedding, c_noise unused (NCSNv2's technique 3)

  def __post_init__(self):
    if self.num_label_classes and not self.conditional:
      raise ValueError(f"model.num_label_classes={self.num_label_classes} needs the embedding "
                       "of a conditional DDPM; set model.conditional=True")


class DDPM(nn.Module):
  """(x [B, H, W, C], c_noise [B], train, labels [B] or None) -> [B, H, W, C]. c_noise
  enters through DDPM's positional embedding (with c_noise = 999 t, the timestep index),
  unless not `conditional`; labels, if the network is class-conditional, through an
  embedding added to it."""

  config: DDPMConfig

  @nn.compact
  def __call__(self, x: jax.Array, c_noise: jax.Array, train: bool = False,
               labels=None) -> jax.Array:
    cfg = self.config
    dtype = jnp.dtype(cfg.dtype)
    act = layers.get_activation(cfg.nonlinearity)
    block = nn.remat(layers.ResnetBlockDDPM, static_argnums=(3,)) if cfg.remat else layers.ResnetBlockDDPM
    names = (f"ResnetBlock_{i}" for i in itertools.count())   # the same with remat
    resnet = lambda out_ch=None: block(act=act, out_ch=out_ch, dropout=cfg.dropout,
                                       num_groups=cfg.num_groups, dtype=dtype, name=next(names))
    attention = lambda: layers.AttnBlock(num_groups=cfg.num_groups, dtype=dtype)

    temb = None
    if cfg.conditional:
      temb = layers.sinusoidal_embedding(c_noise, cfg.nf, freq_shift=1.0)
      temb = layers.dense(4 * cfg.nf)(temb)
      temb = layers.dense(4 * cfg.nf)(act(temb))
      temb = layers.add_label_embedding(temb, labels, cfg.num_label_classes).astype(dtype)

    hs = [layers.conv(cfg.nf, dtype=dtype)(x.astype(dtype))]
    for level, mult in enumerate(cfg.ch_mult):
      for _ in range(cfg.num_res_blocks):
        h = resnet(cfg.nf * mult)(hs[-1], temb, train)
        if h.shape[1] in cfg.attn_resolutions:
          h = attention()(h)
        hs.append(h)
      if level != len(cfg.ch_mult) - 1:
        hs.append(layers.Downsample(with_conv=cfg.resamp_with_conv, dtype=dtype)(hs[-1]))

    h = resnet()(hs[-1], temb, train)
    h = attention()(h)
    h = resnet()(h, temb, train)

    for level, mult in reversed(list(enumerate(cfg.ch_mult))):
      for _ in range(cfg.num_res_blocks + 1):
        h = resnet(cfg.nf * mult)(jnp.concatenate([h, hs.pop()], axis=-1), temb, train)
        if cfg.attention_every_up_block and h.shape[1] in cfg.attn_resolutions:
          h = attention()(h)
      if not cfg.attention_every_up_block and h.shape[1] in cfg.attn_resolutions:
        h = attention()(h)
      if level != 0:
        h = layers.Upsample(with_conv=cfg.resamp_with_conv, dtype=dtype)(h)
    assert not hs

    h = act(layers.group_norm(h.shape[-1], cfg.num_groups, dtype)(h))
    return layers.conv(x.shape[-1], init_scale=0.0, dtype=dtype)(h).astype(jnp.float32)

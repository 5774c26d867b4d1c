"""Noise-conditioned residual MLP for low-dimensional data (the 2-D experiments)."""
import dataclasses

import flax.linen as nn
import jax

from models import layers


@dataclasses.dataclass(frozen=True)
class MLPConfig:
  hidden: int = 128
  depth: int = 3
  embed_dim: int = 32
  num_label_classes: int = 0   # > 0: class-conditional (n = the null label)


class MLP(nn.Module):
  """(x [B, D], c_noise [B], train, labels [B] or None) -> [B, D]. Residual blocks, each
  shifted by the noise (and label) embedding; the output layer starts at zero so the
  initial network is exactly 0."""

  config: MLPConfig

  @nn.compact
  def __call__(self, x: jax.Array, c_noise: jax.Array, train: bool = False,
               labels=None) -> jax.Array:
    del train  # no dropout or batch statistics
    cfg = self.config
    emb = layers.sinusoidal_embedding(c_noise * 10.0, cfg.embed_dim)
    emb = nn.Dense(cfg.hidden)(nn.silu(nn.Dense(cfg.hidden)(emb)))
    emb = layers.add_label_embedding(emb, labels, cfg.num_label_classes)
    h = nn.Dense(cfg.hidden)(x)
    for _ in range(cfg.depth):
      branch = nn.Dense(cfg.hidden)(nn.silu(h) + emb)
      h = h + nn.Dense(cfg.hidden)(nn.silu(branch))
    return nn.Dense(x.shape[-1], kernel_init=nn.initializers.zeros)(nn.silu(h))

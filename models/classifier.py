"""Small CNN image classifiers of the 28 x 28 datasets (Fashion-MNIST, MNIST).

`SmallCNN` is the offline feature network: its penultimate activations give FID / KID /
precision-recall features, its logits an Inception-Score analogue (feature_nets.py).
`NoiseConditionalCNN` is the classifier p_t(c | x_t) of classifier guidance
(run/classifier.py): the same three convolutions, each told the noise level. `fit` is
the training loop both use.
"""
from typing import Callable, Iterator, Optional

import flax.linen as nn
import jax
import numpy as np
import optax

from models import canonical_conv
from models import layers
from models import normalization


class SmallCNN(nn.Module):
  """images [B, H, W, C] in [0, 1] -> (features [B, num_features], logits [B, num_classes]).

  Three 3x3 convolutions (32, 64, 128 channels), each followed by ReLU and a 2x2 max
  pool, then a ReLU dense layer (the features) and the linear classifier; dropout on
  the features in training."""

  num_classes: int = 10
  num_features: int = 128
  dropout: float = 0.3

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False):
    h = 2.0 * images - 1.0
    for channels in (32, 64, 128):
      h = nn.max_pool(nn.relu(nn.Conv(channels, (3, 3))(h)), (2, 2), (2, 2))
    features = nn.relu(nn.Dense(self.num_features)(h.reshape(h.shape[0], -1)))
    logits = nn.Dense(self.num_classes)(nn.Dropout(self.dropout, deterministic=not train)(features))
    return features, logits


class NoiseConditionalCNN(nn.Module):
  """(x [B, H, W, C] of unit scale, c_noise [B]) -> logits [B, num_classes].

  SmallCNN's convolutions (channels 32, 64, 128), each followed by GroupNorm, a
  per-channel shift from the embedding of the noise level c_noise (the caller's
  log-SNR), SiLU and a 2x2 average pool; then a dense layer, shifted alike, and the
  linear classifier. The convolutions are `canonical_conv`'s: guidance differentiates
  the classifier inside the sampler's loop, where XLA:CPU compiles lax's gradients slowly."""

  num_classes: int = 10
  channels: tuple[int, ...] = (32, 64, 128)
  num_features: int = 128
  embedding_dim: int = 64

  @nn.compact
  def __call__(self, x: jax.Array, c_noise: jax.Array):
    emb = layers.sinusoidal_embedding(c_noise, self.embedding_dim, max_period=100.0)
    emb = nn.silu(nn.Dense(self.num_features)(emb))
    h = x
    for channels in self.channels:
      conv = nn.Conv(channels, (3, 3), conv_general_dilated=canonical_conv.conv_general_dilated)
      h = normalization.GroupNorm(min(8, channels))(conv(h))
      h = nn.silu(h + nn.Dense(channels)(emb)[:, None, None, :])
      h = nn.avg_pool(h, (2, 2), (2, 2))
    h = nn.Dense(self.num_features)(h.reshape(h.shape[0], -1))
    return nn.Dense(self.num_classes)(nn.silu(h + nn.Dense(self.num_features)(emb)))


def fit(loss_fn: Callable, params, batches: Iterator, steps: int, lr: float, key: jax.Array,
        log_every: int = 0, log: Optional[Callable[[int, float], None]] = None):
  """Minimizes loss_fn(params, batch, key) -> scalar over `steps` batches of `batches`
  with Adam and a cosine decay of the rate from lr to 0 (one jitted step each; step i
  gets fold_in(key, i)). Every log_every steps (and at the end), log(step, the mean loss
  since the last call). Returns the parameters."""
  optimizer = optax.adam(optax.cosine_decay_schedule(lr, steps))

  @jax.jit
  def step(params, opt_state, batch, key):
    loss, grads = jax.value_and_grad(loss_fn)(params, batch, key)
    updates, opt_state = optimizer.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, loss

  opt_state, recent = optimizer.init(params), []
  for i in range(steps):
    params, opt_state, loss = step(params, opt_state, next(batches), jax.random.fold_in(key, i))
    recent.append(loss)
    if log and ((log_every and (i + 1) % log_every == 0) or i + 1 == steps):
      log(i + 1, float(np.mean(recent)))
      recent = []
  return params

"""A small CNN image classifier, the offline feature network of the 28 x 28 datasets
(Fashion-MNIST, MNIST): its penultimate activations give FID / KID / precision-recall
features, its logits an Inception-Score analogue (feature_nets.py)."""
import flax.linen as nn
import jax


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

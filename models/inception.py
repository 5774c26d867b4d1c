"""Inception-v3 as the FID network: the 2015-12-05 TensorFlow graph that TF's FID code,
pytorch-fid and torch-fidelity evaluate, with pytorch-fid's block structure and names
(its FIDInceptionA / C / E_1 / E_2 differ from torchvision's Inception: average pools
exclude the padding, and the last block max-pools).

Each convolution has no bias and is followed by batch normalization in inference mode,
stored folded into a per-channel `scale` and `bias` (feature_nets.convert_inception).
"""
import flax.linen as nn
import jax
import jax.numpy as jnp


def _pairs(padding):
  ph, pw = (padding, padding) if isinstance(padding, int) else padding
  return ((ph, ph), (pw, pw))


class BasicConv(nn.Module):
  """conv (no bias) -> folded batch norm -> ReLU."""
  features: int
  kernel_size: tuple[int, int] = (1, 1)
  strides: int = 1
  padding: int | tuple[int, int] = 0

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(self.features, self.kernel_size, self.strides, padding=_pairs(self.padding),
                use_bias=False, name="conv")(x)
    scale = self.param("scale", nn.initializers.ones, (self.features,))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    return nn.relu(x * scale[None, None, None] + bias[None, None, None])


def _avg_pool_3x3(x):
  return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3(x, stride=2):
  """Stride 2: no padding (floor); stride 1: padded by 1 (with -inf)."""
  pad = 1 if stride == 1 else 0
  return nn.max_pool(x, (3, 3), (stride, stride), padding=((pad, pad), (pad, pad)))


class InceptionA(nn.Module):
  pool_features: int

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv(64, name="branch1x1")(x)
    b5 = BasicConv(64, (5, 5), padding=2, name="branch5x5_2")(BasicConv(48, name="branch5x5_1")(x))
    b3 = BasicConv(64, name="branch3x3dbl_1")(x)
    b3 = BasicConv(96, (3, 3), padding=1, name="branch3x3dbl_2")(b3)
    b3 = BasicConv(96, (3, 3), padding=1, name="branch3x3dbl_3")(b3)
    bp = BasicConv(self.pool_features, name="branch_pool")(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b5, b3, bp], -1)


class InceptionB(nn.Module):
  @nn.compact
  def __call__(self, x):
    b3 = BasicConv(384, (3, 3), 2, name="branch3x3")(x)
    bd = BasicConv(64, name="branch3x3dbl_1")(x)
    bd = BasicConv(96, (3, 3), padding=1, name="branch3x3dbl_2")(bd)
    bd = BasicConv(96, (3, 3), 2, name="branch3x3dbl_3")(bd)
    return jnp.concatenate([b3, bd, _max_pool_3x3(x)], -1)


class InceptionC(nn.Module):
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c7 = self.channels_7x7
    row, col = dict(kernel_size=(1, 7), padding=(0, 3)), dict(kernel_size=(7, 1), padding=(3, 0))
    b1 = BasicConv(192, name="branch1x1")(x)
    b7 = BasicConv(c7, name="branch7x7_1")(x)
    b7 = BasicConv(c7, **row, name="branch7x7_2")(b7)
    b7 = BasicConv(192, **col, name="branch7x7_3")(b7)
    bd = BasicConv(c7, name="branch7x7dbl_1")(x)
    bd = BasicConv(c7, **col, name="branch7x7dbl_2")(bd)
    bd = BasicConv(c7, **row, name="branch7x7dbl_3")(bd)
    bd = BasicConv(c7, **col, name="branch7x7dbl_4")(bd)
    bd = BasicConv(192, **row, name="branch7x7dbl_5")(bd)
    bp = BasicConv(192, name="branch_pool")(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b7, bd, bp], -1)


class InceptionD(nn.Module):
  @nn.compact
  def __call__(self, x):
    b3 = BasicConv(320, (3, 3), 2, name="branch3x3_2")(BasicConv(192, name="branch3x3_1")(x))
    b7 = BasicConv(192, name="branch7x7x3_1")(x)
    b7 = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
    b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
    b7 = BasicConv(192, (3, 3), 2, name="branch7x7x3_4")(b7)
    return jnp.concatenate([b3, b7, _max_pool_3x3(x)], -1)


class InceptionE(nn.Module):
  """pytorch-fid's FIDInceptionE_1 (average pool) or FIDInceptionE_2 (max pool)."""
  max_pool: bool

  @nn.compact
  def __call__(self, x):
    row, col = dict(kernel_size=(1, 3), padding=(0, 1)), dict(kernel_size=(3, 1), padding=(1, 0))
    b1 = BasicConv(320, name="branch1x1")(x)
    b3 = BasicConv(384, name="branch3x3_1")(x)
    b3 = jnp.concatenate([BasicConv(384, **row, name="branch3x3_2a")(b3),
                          BasicConv(384, **col, name="branch3x3_2b")(b3)], -1)
    bd = BasicConv(448, name="branch3x3dbl_1")(x)
    bd = BasicConv(384, (3, 3), padding=1, name="branch3x3dbl_2")(bd)
    bd = jnp.concatenate([BasicConv(384, **row, name="branch3x3dbl_3a")(bd),
                          BasicConv(384, **col, name="branch3x3dbl_3b")(bd)], -1)
    pooled = _max_pool_3x3(x, stride=1) if self.max_pool else _avg_pool_3x3(x)
    bp = BasicConv(192, name="branch_pool")(pooled)
    return jnp.concatenate([b1, b3, bd, bp], -1)


def preprocess(images: jax.Array) -> jax.Array:
  """images [B, H, W, C] in [0, 1] (C = 1 or 3) -> [B, 299, 299, 3] in [-1, 1]: one
  channel repeated to three, bilinear resize with half-pixel centres and no
  antialiasing (PyTorch's `interpolate(..., align_corners=False)`, as pytorch-fid does)."""
  if images.shape[-1] == 1:
    images = jnp.repeat(images, 3, axis=-1)
  x = jax.image.resize(images, (images.shape[0], 299, 299, 3), "bilinear", antialias=False)
  return 2.0 * x - 1.0


class InceptionV3(nn.Module):
  """images [B, H, W, C] in [0, 1] (C = 1 or 3) -> (pool3 features [B, 2048], logits
  [B, 1008]), after `preprocess`."""

  @nn.compact
  def __call__(self, images: jax.Array):
    x = preprocess(images)
    x = BasicConv(32, (3, 3), 2, name="Conv2d_1a_3x3")(x)
    x = BasicConv(32, (3, 3), name="Conv2d_2a_3x3")(x)
    x = _max_pool_3x3(BasicConv(64, (3, 3), padding=1, name="Conv2d_2b_3x3")(x))
    x = BasicConv(80, name="Conv2d_3b_1x1")(x)
    x = _max_pool_3x3(BasicConv(192, (3, 3), name="Conv2d_4a_3x3")(x))
    x = InceptionA(32, name="Mixed_5b")(x)
    x = InceptionA(64, name="Mixed_5c")(x)
    x = InceptionA(64, name="Mixed_5d")(x)
    x = InceptionB(name="Mixed_6a")(x)
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
      x = InceptionC(c7, name=name)(x)
    x = InceptionD(name="Mixed_7a")(x)
    x = InceptionE(max_pool=False, name="Mixed_7b")(x)
    x = InceptionE(max_pool=True, name="Mixed_7c")(x)
    features = jnp.mean(x, axis=(1, 2))
    return features, nn.Dense(1008, name="fc")(features)

"""FIR up/down-sampling of NHWC images (StyleGAN2's upfirdn, as used by NCSN++).

Every operation is one depthwise `lax.conv_general_dilated`: zero insertion is
`lhs_dilation`, decimation is the window stride, so no transposes to NCHW are needed.
A 1-D kernel k is made separable (outer(k, k)) and normalized to sum to one; upsampling
multiplies it by factor^2 so constant images keep their value.
"""
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def setup_kernel(k: Sequence[float]) -> np.ndarray:
  """The normalized 2-D FIR kernel [K, K] of a separable 1-D kernel (or a 2-D one)."""
  k = np.asarray(k, dtype=np.float32)
  if k.ndim == 1:
    k = np.outer(k, k)
  return k / k.sum()


def upfirdn2d(x: jax.Array, kernel: np.ndarray, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> jax.Array:
  """Upsample by zero insertion, pad, convolve with `kernel` [K, K], keep every
  `down`-th pixel; x [B, H, W, C] -> [B, (H up + p0 + p1 - K) // down + 1, ..., C].

  Zero insertion puts up - 1 zeros after every pixel (the last one included), as
  scipy.signal.upfirdn; `lhs_dilation` omits the trailing ones, hence `up - 1` extra
  padding at the end. The kernel is flipped: a true convolution, not a correlation.
  """
  channels = x.shape[-1]
  w = jnp.asarray(kernel[::-1, ::-1], dtype=x.dtype)
  w = jnp.tile(w[:, :, None, None], (1, 1, 1, channels))        # HWIO, depthwise
  padding = [(pad[0], pad[1] + up - 1)] * 2
  return jax.lax.conv_general_dilated(
      x, w, window_strides=(down, down), padding=padding, lhs_dilation=(up, up),
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=channels)


def upsample_2d(x: jax.Array, k: Sequence[float] = (1, 3, 3, 1), factor: int = 2) -> jax.Array:
  """[B, H, W, C] -> [B, factor H, factor W, C], FIR-filtered."""
  kernel = setup_kernel(k) * factor**2
  p = kernel.shape[0] - factor
  return upfirdn2d(x, kernel, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))


def downsample_2d(x: jax.Array, k: Sequence[float] = (1, 3, 3, 1), factor: int = 2) -> jax.Array:
  """[B, H, W, C] -> [B, H / factor, W / factor, C], FIR-filtered."""
  kernel = setup_kernel(k)
  p = kernel.shape[0] - factor
  return upfirdn2d(x, kernel, down=factor, pad=((p + 1) // 2, p // 2))


def naive_upsample_2d(x: jax.Array, factor: int = 2) -> jax.Array:
  """Nearest-neighbour upsampling, [B, H, W, C] -> [B, factor H, factor W, C]. A broadcast,
  not `jnp.repeat`: its gradient is then a reduction, not a scatter-add (slow on CPU)."""
  b, h, w, c = x.shape
  x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, factor, w, factor, c))
  return x.reshape(b, h * factor, w * factor, c)


def naive_downsample_2d(x: jax.Array, factor: int = 2) -> jax.Array:
  """Average pooling, [B, H, W, C] -> [B, H / factor, W / factor, C]."""
  b, h, w, c = x.shape
  return x.reshape(b, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))


def upsample_conv_2d(x: jax.Array, w: jax.Array, k: Sequence[float] = (1, 3, 3, 1),
                     factor: int = 2) -> jax.Array:
  """Strided transposed convolution by w [S, S, C_in, C_out], then the FIR filter
  (StyleGAN2's fused upsample-conv): [B, H, W, C_in] -> [B, factor H, factor W, C_out]."""
  kernel = setup_kernel(k) * factor**2
  s = w.shape[0]
  p = (kernel.shape[0] - factor) - (s - 1)
  x = jax.lax.conv_general_dilated(
      x, w, window_strides=(1, 1), padding=[(s - 1, s - 1)] * 2, lhs_dilation=(factor, factor),
      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return upfirdn2d(x, kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1))


def conv_downsample_2d(x: jax.Array, w: jax.Array, k: Sequence[float] = (1, 3, 3, 1),
                       factor: int = 2) -> jax.Array:
  """The FIR filter, then a strided convolution by w [S, S, C_in, C_out]:
  [B, H, W, C_in] -> [B, H / factor, W / factor, C_out]."""
  kernel = setup_kernel(k)
  p = (kernel.shape[0] - factor) + (w.shape[0] - 1)
  x = upfirdn2d(x, kernel, pad=((p + 1) // 2, p // 2))
  return jax.lax.conv_general_dilated(
      x, w, window_strides=(factor, factor), padding="VALID",
      dimension_numbers=("NHWC", "HWIO", "NHWC"))

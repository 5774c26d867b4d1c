"""A stride-1 NHWC convolution whose gradients are convolutions in XLA's canonical layout.

XLA:CPU (jax 0.10) compiles a convolution's gradients inside a `while` body (a sampler's
loop, `lax.scan`) in the transposed dimension layouts that autodiff gives them
(`b01f_01oi->b01f` for the input gradient, `f01b_i01o->01bf` for the weight gradient),
as generic loops several times slower than outside a loop, where it transposes the
operands and hands a canonical `b01f_01io->b01f` convolution to Eigen (benchmarks/README.md,
"Loops with convolution gradients"). `conv_general_dilated` here writes both gradients as
canonical convolutions of explicitly transposed operands, behind an optimization barrier
so that XLA cannot fold the transposes back into the convolution. Values and gradients
equal `lax.conv_general_dilated`'s.

It has a custom VJP, so it supports reverse-mode differentiation only (no `jax.jvp`): it
serves networks that are differentiated inside loops but never pushed forward, such as
classifier guidance's classifier (`models/classifier.py`). Pass it to
`flax.linen.Conv(..., conv_general_dilated=conv_general_dilated)`; parameters are unchanged.
"""
import functools

import jax
import jax.numpy as jnp
from jax import lax

DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def _conv(x, w, pads, precision):
  return lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=DIMENSIONS,
                                  precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _canonical_conv(x, w, pads, precision):
  return _conv(x, w, pads, precision)


def _forward(x, w, pads, precision):
  return _conv(x, w, pads, precision), (x, w)


def _backward(pads, precision, residuals, g):
  """g [N, H', W', O] -> (dx [N, H, W, I], dw [kh, kw, I, O]), both canonical convolutions."""
  x, w = residuals
  kernel = w.shape[:2]
  # dx: g correlated with the flipped kernel, its input and output channels swapped.
  w_flipped = lax.optimization_barrier(jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2))
  dx = _conv(g, w_flipped, [(k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip(kernel, pads)],
             precision)
  # dw[a, b, i, o] = sum_{n, h, w} x_padded[n, h + a, w + b, i] g[n, h, w, o]: a convolution
  # of x with channels as batch ([I, H, W, N]) by g as a kernel ([H', W', N, O]).
  x_t, g_t = lax.optimization_barrier((x.transpose(3, 1, 2, 0), g.transpose(1, 2, 0, 3)))
  dw = lax.optimization_barrier(_conv(x_t, g_t, pads, precision)).transpose(1, 2, 0, 3)
  return dx, dw


_canonical_conv.defvjp(_forward, _backward)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         precision=None):
  """`lax.conv_general_dilated` for lhs [N, H, W, I] and rhs [kh, kw, I, O] in NHWC / HWIO
  layout, stride 1, no dilation, one feature group; padding "SAME", "VALID" or
  [(lo, hi), (lo, hi)]. Returns [N, H', W', O]."""
  if lhs.ndim != 4 or rhs.ndim != 4:
    raise ValueError(f"canonical_conv: inputs of {lhs.ndim} and kernels of {rhs.ndim} "
                     "dimensions are not supported; it takes 2-D NHWC / HWIO convolutions")
  unsupported = {
      "window_strides": (tuple(window_strides), (1, 1)),
      "lhs_dilation": (tuple(lhs_dilation or (1, 1)), (1, 1)),
      "rhs_dilation": (tuple(rhs_dilation or (1, 1)), (1, 1)),
      "feature_group_count": (feature_group_count, 1),
      "dimension_numbers": (
          lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers),
          lax.conv_dimension_numbers(lhs.shape, rhs.shape, DIMENSIONS))}
  for name, (given, supported) in unsupported.items():
    if given != supported:
      raise ValueError(f"canonical_conv: {name}={given} is not supported; it takes 2-D "
                       f"NHWC / HWIO convolutions with {name}={supported}")
  pads = (lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], (1, 1), padding)
          if isinstance(padding, str) else padding)
  return _canonical_conv(lhs, rhs, tuple(tuple(int(p) for p in pad) for pad in pads),
                         precision)

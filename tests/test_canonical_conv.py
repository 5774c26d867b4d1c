"""models/canonical_conv.py: lax's convolution, with gradients XLA:CPU compiles well in loops."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from models import canonical_conv


def _both(padding):
  ours = lambda x, w: canonical_conv.conv_general_dilated(
      x, w, (1, 1), padding, dimension_numbers=canonical_conv.DIMENSIONS)
  lax_conv = lambda x, w: lax.conv_general_dilated(
      x, w, (1, 1), padding, dimension_numbers=canonical_conv.DIMENSIONS)
  return ours, lax_conv


@pytest.mark.parametrize("x_shape, w_shape, padding", [
    ((2, 9, 7, 3), (3, 3, 3, 5), "SAME"),
    ((2, 9, 7, 3), (3, 3, 3, 5), "VALID"),
    ((3, 6, 8, 4), (2, 3, 4, 2), ((0, 1), (2, 0))),    # asymmetric, uneven kernel
    ((2, 8, 8, 2), (5, 5, 2, 3), "SAME"),
    ((2, 5, 5, 2), (1, 1, 2, 3), "SAME")])
def test_values_and_both_gradients_equal_lax(x_shape, w_shape, padding):
  """A wrong flip, swapped channels or misplaced padding in either gradient shows here
  (the uneven, asymmetrically padded case fails for a gradient padded symmetrically)."""
  kx, kw, kg = jax.random.split(jax.random.PRNGKey(0), 3)
  x, w = jax.random.normal(kx, x_shape), jax.random.normal(kw, w_shape)
  ours, lax_conv = _both(padding)

  @jax.jit
  def outputs_and_gradients(x, w):
    y, vjp = jax.vjp(ours, x, w)
    y_lax, vjp_lax = jax.vjp(lax_conv, x, w)
    g = jax.random.normal(kg, y.shape)
    return (y, *vjp(g)), (y_lax, *vjp_lax(g))

  for got, want in zip(*outputs_and_gradients(x, w)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(want))))


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="about XLA:CPU's compilation")
def test_gradients_inside_a_loop_compile_to_canonical_convolutions():
  """Inside a fori_loop every convolution of the gradient is XLA's canonical
  b01f_01io->b01f; lax's own gradient there keeps a transposed layout (the slow case)."""
  x, w = jnp.ones((4, 8, 8, 3)), jnp.ones((3, 3, 3, 6))

  def layouts(conv):
    grads = jax.grad(lambda x, w: jnp.sum(jnp.sin(conv(x, w))), argnums=(0, 1))
    loop = jax.jit(lambda x, w: lax.fori_loop(
        0, 3, lambda i, xw: tuple(a + 1e-3 * g for a, g in zip(xw, grads(*xw))), (x, w)))
    hlo = loop.lower(x, w).compile().as_text()
    return {line.split("dim_labels=")[1].split(",")[0] for line in hlo.splitlines()
            if " convolution(" in line and "while/body" in line}

  ours, lax_conv = _both("SAME")
  assert layouts(ours) == {"b01f_01io->b01f"}
  assert len(layouts(lax_conv)) > 1


@pytest.mark.parametrize("kwargs, message", [
    (dict(window_strides=(2, 2)), r"window_strides=\(2, 2\) is not supported"),
    (dict(rhs_dilation=(2, 2)), r"rhs_dilation=\(2, 2\) is not supported"),
    (dict(feature_group_count=3), "feature_group_count=3 is not supported"),
    (dict(dimension_numbers=("NCHW", "OIHW", "NCHW")), "dimension_numbers=.* is not supported")])
def test_unsupported_arguments_are_named(kwargs, message):
  x, w = jnp.ones((2, 6, 6, 3)), jnp.ones((3, 3, 3, 3))
  args = dict(window_strides=(1, 1), padding="SAME",
              dimension_numbers=canonical_conv.DIMENSIONS) | kwargs
  with pytest.raises(ValueError, match=message):
    canonical_conv.conv_general_dilated(x, w, **args)

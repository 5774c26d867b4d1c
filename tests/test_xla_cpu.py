"""The XLA:CPU setting of main.py and the tests (xla_cpu.py)."""
import jax
import jax.numpy as jnp
import pytest

import xla_cpu


def test_eigen_convolutions_flag_is_added_once_and_yields_to_the_user():
  environ = {}
  xla_cpu.use_eigen_convolutions(environ)
  assert environ["XLA_FLAGS"] == xla_cpu.EIGEN_CONVOLUTIONS
  environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  xla_cpu.use_eigen_convolutions(environ)
  xla_cpu.use_eigen_convolutions(environ)
  assert environ["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=2",
                                          xla_cpu.EIGEN_CONVOLUTIONS]
  users = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=individual_convolution"}
  xla_cpu.use_eigen_convolutions(users)
  assert users["XLA_FLAGS"] == "--xla_cpu_experimental_ynn_fusion_type=individual_convolution"


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="an XLA:CPU setting")
def test_convolutions_compile_to_xla_kernels_not_ynnpack():
  """conftest.py applies the setting: a convolution and its gradients are XLA
  convolutions, not YNNPACK fusions (which is what jax's default gives)."""
  def loss(x, w):
    return jnp.sum(jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                                dimension_numbers=("NHWC", "HWIO", "NHWC")))
  x, w = jnp.ones((8, 32, 32, 64)), jnp.ones((3, 3, 64, 64))   # YNNPACK takes this size
  hlo = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(x, w).compile().as_text()
  assert "convolution(" in hlo and "ynn_fusion" not in hlo

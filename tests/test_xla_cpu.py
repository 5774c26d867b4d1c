"""The XLA:CPU setting of main.py and the tests (infra/xla_cpu.py)."""
import jax
import jax.numpy as jnp
import pytest

from infra import xla_cpu


def test_kernel_flag_is_added_once_and_yields_to_the_user():
  environ = {}
  xla_cpu.choose_cpu_kernels(environ)
  assert environ["XLA_FLAGS"] == xla_cpu.CPU_KERNELS
  environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  xla_cpu.choose_cpu_kernels(environ)
  xla_cpu.choose_cpu_kernels(environ)
  assert environ["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=2",
                                          xla_cpu.CPU_KERNELS]
  users = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=individual_convolution"}
  xla_cpu.choose_cpu_kernels(users)
  assert users["XLA_FLAGS"] == "--xla_cpu_experimental_ynn_fusion_type=individual_convolution"


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="an XLA:CPU setting")
def test_convolutions_compile_to_xla_kernels_and_reductions_to_ynnpack():
  """conftest.py applies the setting: a convolution and its two gradients are XLA
  convolutions (jax's default makes all three YNNPACK fusions), while the bias gradient,
  a sum over all axes but the channels, is a YNNPACK reduction (XLA's own takes 12-27x
  longer; without the setting's "reduce" it is an XLA loop)."""
  def loss(x, w, b):
    y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.sum(jnp.sin(y + b[None, None, None, :]))
  x, w, b = jnp.ones((8, 32, 32, 64)), jnp.ones((3, 3, 64, 64)), jnp.ones((64,))
  hlo = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(x, w, b).compile().as_text()
  instructions = [line for line in hlo.splitlines() if " = " in line]
  assert sum(" convolution(" in line for line in instructions) == 3
  ynn_fusions = [line for line in instructions if '"kind":"__ynn_fusion"' in line]
  assert len(ynn_fusions) == 1 and "reduce_sum" in ynn_fusions[0], ynn_fusions

"""XLA:CPU settings this codebase runs with; call before JAX starts its backend.

jax 0.10 hands convolutions, matrix multiplications and reductions to YNNPACK on the CPU
by default. For the U-Nets here XLA's own (Eigen) convolutions are faster, while
YNNPACK's matrix multiplications and reductions are as fast or faster (a bias gradient,
a sum over all axes but the channels, takes 12-27x longer with XLA's reduction). So
CPU_KERNELS keeps YNNPACK for those two and leaves convolutions to XLA: on a 2-core Xeon
the CIFAR-10 DDPM U-Net's train step runs 1.4-1.5x faster than with jax's default and
DDIM sampling up to 1.15x; the Fashion-MNIST CPU config's step 1.2x and its sampler 1.3x
(benchmarks/README.md). The flag is read only by XLA:CPU; GPU and TPU runs ignore it.
"""
import os

CPU_KERNELS = "--xla_cpu_experimental_ynn_fusion_type=individual_dot,reduce"


def choose_cpu_kernels(environ=os.environ) -> None:
  """Adds CPU_KERNELS to XLA_FLAGS, unless XLA_FLAGS already chooses the YNNPACK fusion
  types (the user's setting wins)."""
  flags = environ.get("XLA_FLAGS", "")
  if "xla_cpu_experimental_ynn_fusion_type" not in flags:
    environ["XLA_FLAGS"] = f"{flags} {CPU_KERNELS}".strip()

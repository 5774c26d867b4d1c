"""XLA:CPU settings this codebase runs with; call before JAX starts its backend.

jax 0.10 hands convolutions to YNNPACK on the CPU by default. For the U-Nets here XLA's
own (Eigen) convolutions are faster: on a 2-core Xeon the Fashion-MNIST CPU config's
train step takes 0.68-0.77x the time and its 100-step DDIM sampler 0.67-0.78x, and the
half-width CIFAR-10 U-Net samples 1.6x faster (benchmarks/README.md). YNNPACK keeps the
matrix multiplications, where it is as fast. The flag is read only by XLA:CPU; GPU and
TPU runs ignore it.
"""
import os

EIGEN_CONVOLUTIONS = "--xla_cpu_experimental_ynn_fusion_type=individual_dot"


def use_eigen_convolutions(environ=os.environ) -> None:
  """Adds EIGEN_CONVOLUTIONS to XLA_FLAGS, unless XLA_FLAGS already chooses the YNNPACK
  fusion types (the user's setting wins)."""
  flags = environ.get("XLA_FLAGS", "")
  if "xla_cpu_experimental_ynn_fusion_type" not in flags:
    environ["XLA_FLAGS"] = f"{flags} {EIGEN_CONVOLUTIONS}".strip()

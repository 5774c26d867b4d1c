"""XLA:CPU settings this codebase runs with; call before JAX starts its backend.

jax 0.10 hands convolutions, matrix multiplications and reductions to YNNPACK on the CPU
by default. For the U-Nets here XLA's own (Eigen) convolutions are faster, while
YNNPACK's matrix multiplications and reductions are as fast or faster (a bias gradient,
a sum over all axes but the channels, takes 12-27x longer with XLA's reduction). So
CPU_KERNELS keeps YNNPACK for those two and leaves convolutions to XLA: on a 2-core Xeon
the CIFAR-10 DDPM U-Net's train step runs 1.4-1.5x faster than with jax's default and
DDIM sampling up to 1.15x; the Fashion-MNIST CPU config's step 1.2x and its sampler 1.3x
(benchmarks/README.md). The flag is read only by XLA:CPU; GPU and TPU runs ignore it.
`compile_settings` chooses how run/build.py compiles on the CPU.
"""
import os

CPU_KERNELS = "--xla_cpu_experimental_ynn_fusion_type=individual_dot,reduce"


def choose_cpu_kernels(environ=os.environ) -> None:
  """Adds CPU_KERNELS to XLA_FLAGS, unless XLA_FLAGS already chooses the YNNPACK fusion
  types (the user's setting wins)."""
  flags = environ.get("XLA_FLAGS", "")
  if "xla_cpu_experimental_ynn_fusion_type" not in flags:
    environ["XLA_FLAGS"] = f"{flags} {CPU_KERNELS}".strip()


def compile_settings(backend: str, param_shapes, repeated: bool) -> tuple[dict, bool]:
  """(init_state's compiler options, whether the train step unrolls its steps) for a
  network with parameters of `param_shapes` on `backend`; `repeated`: the jitted step
  runs several optimizer steps or microbatches."""
  cpu = backend == "cpu"
  # Run once, but on the CPU XLA's backend optimizations of its hundreds of random-number
  # calls make init slow to compile: 7.8 s for the tests' small U-Net, 2.3 s at level 0
  # (values equal up to rounding, tested; run time 6 ms either way).
  options = {"xla_backend_optimization_level": 0} if cpu else {}
  # XLA:CPU compiles convolution gradients inside a loop body to generic loops, 25-150x
  # slower (benchmarks/README.md): on the CPU, the steps (and microbatches) of a network
  # with convolution kernels (4-D parameters) are compiled one after another.
  return options, cpu and repeated and any(len(shape) == 4 for shape in param_shapes)

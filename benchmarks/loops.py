r"""Convolution gradients inside XLA loops: per-iteration time in a loop against the same
iterations unrolled (the peer: what XLA:CPU compiles outside loops), in one run.

1. Train step: an SGD step on two 3x3 convolutions (batch 32, 32 x 32, 64 channels), alone,
   and 4 steps under `lax.scan`, unrolled or not, with lax's convolution and with
   `models/canonical_conv.py`'s; how many of the compiled convolutions are generic
   partitioned loops (`outer_dimension_partitions`).
2. Input gradients (what classifier guidance computes at every sampler step): the gradient
   with respect to the input of a stack of three 3x3 convolutions (batch 64, 28 x 28,
   1-32-32-64 channels), 20 times in a `fori_loop`, unrolled or not, with lax's convolution
   and with `models/canonical_conv.py`'s.

  python -m benchmarks.loops [--repeats 5]

It runs with main.py's XLA:CPU kernels (infra/xla_cpu.py); an XLA_FLAGS choice of
--xla_cpu_experimental_ynn_fusion_type overrides them.
"""
import functools

from infra import xla_cpu

xla_cpu.choose_cpu_kernels()   # as main.py does, before JAX starts its backend

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
from jax import lax  # pylint: disable=g-import-not-at-top,wrong-import-position

from models import canonical_conv  # pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks import timing  # pylint: disable=g-import-not-at-top,wrong-import-position

flags.DEFINE_integer("repeats", 5, "Timed repetitions (median and range reported).")
FLAGS = flags.FLAGS


def lax_conv(x, w):
  return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=canonical_conv.DIMENSIONS)


def our_conv(x, w):
  return canonical_conv.conv_general_dilated(x, w, (1, 1), "SAME",
                                             dimension_numbers=canonical_conv.DIMENSIONS)


def timed(compiled, *args):
  """(median, min, max) wall seconds of compiled(*args) after one warm-up call."""
  times = timing.wall_seconds(compiled, *args, repeats=FLAGS.repeats)
  return float(np.median(times)), min(times), max(times)


def partitioned_convolutions(compiled) -> int:
  return sum(" convolution(" in line and "outer_dimension_partitions" in line
             for line in compiled.as_text().splitlines())


def row(name, fn, args, iterations):
  compiled = jax.jit(fn).lower(*args).compile()
  median, low, high = (t / iterations * 1e3 for t in timed(compiled, *args))
  print(f"| {name} | {median:.1f} ({low:.1f}-{high:.1f}) | {partitioned_convolutions(compiled)} |")


def train_step_rows(n=4):
  key_x, key_w = jax.random.split(jax.random.PRNGKey(0))
  x = jax.random.normal(key_x, (n, 32, 32, 32, 64))
  w = 0.05 * jax.random.normal(key_w, (3, 3, 64, 64))
  print(f"\nSGD step of two 3x3 convolutions, (32, 32, 32, 64); {n} steps per loop\n")
  print("| convolution, program | ms per step (min-max) | partitioned convolutions |\n"
        "|---|---|---|")
  for name, conv in (("lax", lax_conv), ("canonical_conv", our_conv)):
    loss = lambda w, x, conv=conv: jnp.sum(jnp.sin(conv(jnp.tanh(conv(x, w)), w)))
    step = lambda w, x, loss=loss: w - 1e-3 * jax.grad(loss)(w, x)
    row(f"{name}, one step", step, (w, x[0]), 1)
    for unroll in (True, False):
      row(f"{name}, lax.scan(unroll={unroll})",
          lambda w, xs, step=step, unroll=unroll: lax.scan(
              lambda w, x: (step(w, x), None), w, xs, unroll=unroll)[0], (w, x), n)


def input_gradient_rows(n=20):
  keys = jax.random.split(jax.random.PRNGKey(1), 4)
  channels = (1, 32, 32, 64)
  ws = [0.1 * jax.random.normal(k, (3, 3, c_in, c_out))
        for k, c_in, c_out in zip(keys, channels[:-1], channels[1:])]
  x = jax.random.normal(keys[3], (64, 28, 28, 1))

  def stack(conv, x):
    for w in ws:
      x = jnp.tanh(conv(x, w))
    return jnp.sum(x ** 2)

  print(f"\nInput gradient of three 3x3 convolutions, (64, 28, 28, 1-32-32-64); {n} per loop\n")
  print("| convolution, loop | ms per gradient (min-max) | partitioned convolutions |\n"
        "|---|---|---|")
  for name, conv in (("lax", lax_conv), ("canonical_conv", our_conv)):
    grad = jax.grad(functools.partial(stack, conv))
    for unroll in (True, False):
      row(f"{name}, fori_loop(unroll={unroll})",
          lambda x, grad=grad, unroll=unroll: lax.fori_loop(
              0, n, lambda i, x: x + 1e-3 * grad(x), x, unroll=unroll), (x,), n)


def main(argv):
  del argv
  print(f"jax {jax.__version__}, backend {jax.default_backend()}, {jax.device_count()} devices")
  train_step_rows()
  input_gradient_rows()


if __name__ == "__main__":
  app.run(main)

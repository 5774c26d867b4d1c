"""Shared plumbing of the experiment scripts: flags, output files, markdown tables."""
import os
import time

from absl import app
from absl import flags
import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

import datasets
import densities
import evaluation
import feature_nets
from models import mlp

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

flags.DEFINE_string("outdir", "docs/results", "Where the table (.md) and figure (.png) go.")
flags.DEFINE_bool("quick", False, "Tiny sizes: checks that the script runs, numbers are not meaningful.")
# The Fashion-MNIST pages' scoring (fashion_mnist_table, fashion_mnist_consistency).
flags.DEFINE_integer("sampling_seeds", 3, "Sampling seeds per network and sampler.")
flags.DEFINE_integer("num_samples", 2000, "Samples per sampler and sampling seed.")
flags.DEFINE_string("data_dir", "data/tfds", "The prepared dataset and feature network.")
FLAGS = flags.FLAGS
# Sampling seed k of the Fashion-MNIST pages draws with PRNGKey(FASHION_MNIST_KEY + k): one
# network and sampler give the same rounds on every page, which share them.
FASHION_MNIST_KEY = 30_000
# The 1-D three-component mixture of Q5, Q7 and Q8.
MIXTURE_1D = densities.GaussianMixture(means=jnp.array([[-2.0], [1.0], [3.0]]),
                                       stds=jnp.array([0.3, 0.8, 0.5]),
                                       weights=jnp.array([0.2, 0.5, 0.3]))


def markdown_table(header, rows, floatfmt=".3g"):
  """Rows of cells (str or number) -> a GitHub markdown table."""
  def cell(v):
    text = format(v, floatfmt) if isinstance(v, float) else str(v)
    return text.replace("|", "\\|")        # a pipe inside a cell would split it
  lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
  return "\n".join(lines)


def log_log_slope(x, y, y_se) -> tuple[float, float]:
  """(slope, SE) of the least-squares line through (log x, log y) [k], the SE propagated
  from independent standard errors y_se [k] of y (delta method: SE(log y) = y_se / y)."""
  lx, ly = np.log(np.asarray(x, np.float64)), np.log(np.asarray(y, np.float64))
  c = (lx - lx.mean()) / np.sum((lx - lx.mean()) ** 2)       # slope = sum c_i log y_i
  return float(c @ ly), float(np.sqrt(np.sum((c * np.asarray(y_se) / np.exp(ly)) ** 2)))


def require_feature_net(page: str):
  """A one-line UsageError naming the command that makes the missing Fashion-MNIST feature
  network (it needs the prepared dataset too), before a page draws anything."""
  try:
    feature_nets.check_available("fashion_mnist_cnn", FLAGS.data_dir)
  except (ValueError, FileNotFoundError) as e:
    raise app.UsageError(f"{page}: {e}") from None


def mean_se(values) -> tuple[float, float]:
  """(mean, SE of the mean) of per-seed values; SE nan for one value."""
  v = np.asarray(values, np.float64)
  return float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else np.nan


def compare(a, b, fmt: str = ".2f") -> str:
  """'lower' / 'higher' where the mean of per-seed values a differs from b's by more than
  twice the SE of the gap (independent rows), else 'not resolved from'; the gap and its SE
  follow in `fmt`."""
  (ma, sa), (mb, sb) = mean_se(a), mean_se(b)
  gap, se = ma - mb, float(np.hypot(sa, sb))
  numbers = f"({gap:+{fmt}} ± {se:{fmt}})"
  if not np.isfinite(se) or abs(gap) <= 2.0 * se:
    return f"not resolved from {numbers}"
  return f"{'lower' if gap < 0 else 'higher'} than {numbers}"


def write_outputs(name, title, setup, table, figure):
  """Writes <outdir>/<name>.md (title, setup, table, figure link) and <name>.png; prints the table."""
  os.makedirs(FLAGS.outdir, exist_ok=True)
  figure_path = os.path.join(FLAGS.outdir, f"{name}.png")
  figure.savefig(figure_path, dpi=110, bbox_inches="tight")
  plt.close(figure)
  text = f"## {title}\n\n{setup}\n\n{table}\n\n![{name}]({name}.png)\n"
  with open(os.path.join(FLAGS.outdir, f"{name}.md"), "w") as f:
    f.write(text)
  print(text)
  return text


def shorten_training(config, steps=20):
  """--quick: a config's training cut to `steps` steps (logs and snapshots to match)."""
  t = config.training
  t.n_iters, t.n_jitted_steps, t.log_freq = steps, 10, 10
  t.snapshot_freq = t.snapshot_freq_for_preemption = steps


def make_fit(loss_fn, steps, lr=3e-3):
  """A jitted run(params, key) -> (params, per-step losses [steps]): Adam on
  loss_fn(params, key) for `steps` steps under one lax.scan. Reuse it to time it."""
  optimizer = optax.adam(lr)

  @jax.jit
  def run(params, key):
    def step(carry, k):
      params, opt_state = carry
      loss, grads = jax.value_and_grad(loss_fn)(params, k)
      updates, opt_state = optimizer.update(grads, opt_state)
      return (optax.apply_updates(params, updates), opt_state), loss
    (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)),
                                       jax.random.split(key, steps))
    return params, losses

  return run


def fit(loss_fn, params, steps, key, lr=3e-3):
  return make_fit(loss_fn, steps, lr)(params, key)


def timed_fit(loss_fn, params, steps, key, lr=3e-3):
  """fit, plus the wall time per step of a second (compiled) run."""
  run = make_fit(loss_fn, steps, lr)
  jax.block_until_ready(run(params, key))
  start = time.perf_counter()
  params, losses = jax.block_until_ready(run(params, key))
  return params, losses, (time.perf_counter() - start) / steps


def single_level_mlp(key, dim, hidden=64, depth=2):
  """An MLP score network x [B, D] -> [B, D] for one noise level: (apply, params)."""
  model = mlp.MLP(mlp.MLPConfig(hidden=hidden, depth=depth))
  params = model.init(key, jnp.zeros((1, dim)), jnp.zeros((1,)))
  return (lambda p, x: model.apply(p, x, jnp.zeros((x.shape[0],)))), params


def subset(values, keep=1):
  """All `values` at full size; the first `keep` of them with --quick (fewer compiles)."""
  return tuple(values)[:keep] if FLAGS.quick else tuple(values)


def exact_sample_mmd(held_out: np.ndarray, draws: int = 10) -> tuple[float, float]:
  """Mean and sd of the unbiased MMD^2 of exact n-point draws of the mixture against
  `held_out` [n, 2]: what a perfect sampler scores against this reference set."""
  gmm = datasets.gaussian_mixture()
  values = [float(evaluation.mmd2_unbiased(gmm.sample(k, len(held_out)), held_out))
            for k in jax.random.split(jax.random.PRNGKey(7), draws)]
  return float(np.mean(values)), float(np.std(values, ddof=1))


def mixture_nd(dim: int) -> densities.GaussianMixture:
  """Q3's 4-component mixture in `dim` dimensions (component std 0.5, weights 0.1-0.4,
  means of norm ~4 from a seed that depends on dim)."""
  means = 2.0 * jax.random.normal(jax.random.PRNGKey(100 + dim), (4, dim)) / np.sqrt(dim) * 2
  return densities.GaussianMixture(means, jnp.full((4,), 0.5), jnp.array([0.1, 0.2, 0.3, 0.4]))


class TiedSigmoidDAE(nn.Module):
  """r(x) = W^T sigmoid(W x + b) + c and its energy (Vincent, 2010/2011)."""

  hidden: int = 64

  def setup(self):
    self.w = self.param("w", nn.initializers.normal(0.5), (self.hidden, 2))
    self.b = self.param("b", nn.initializers.zeros, (self.hidden,))
    self.c = self.param("c", nn.initializers.zeros, (2,))

  def __call__(self, x):
    return jax.nn.sigmoid(x @ self.w.T + self.b[None]) @ self.w + self.c[None]

  def neg_energy_times_sigma2(self, x):
    return (jnp.sum(jax.nn.softplus(x @ self.w.T + self.b[None]), -1) + x @ self.c
            - 0.5 * jnp.sum(x**2, -1))

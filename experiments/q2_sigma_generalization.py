r"""Seed question 2: how does the noise level sigma affect generalization in DSM?

A finite training set (n = 200) from the 2-D mixture; one network per sigma trained
by single-level DSM, and one trained by multi-level DSM (continuous VE SDE loss) and
read at each sigma. Columns: train and held-out DSM loss (their gap is overfitting),
the error against the smoothed score grad log p_sigma (what DSM targets: variance),
and against the data score grad log p (what sampling needs: bias, growing with sigma),
both averaged over fresh data from p. Small sigma: unbiased target, but noisy and
memorized; large sigma: stable and generalizing, but the wrong density.

  python -m experiments.q2_sigma_generalization [--quick]     # ~2 min
"""
from absl import app
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import datasets
import losses
import sde_lib
from experiments import common
from models import mlp
from models import parameterizations

FLAGS = common.FLAGS
GMM = datasets.gaussian_mixture()
SIGMAS = (0.05, 0.1, 0.2, 0.5, 1.0)


def errors(score_fn, sigma, x_test):
  s = score_fn(x_test)
  to_smoothed = jnp.mean(jnp.sum((s - GMM.smoothed(sigma).score(x_test)) ** 2, -1))
  to_data = jnp.mean(jnp.sum((s - GMM.score(x_test)) ** 2, -1))
  return float(to_smoothed), float(to_data)


def dsm_value(score_fn, x0, sigma, n_noise=20):
  """sigma^2 DSM averaged over n_noise noise draws (one jitted vmap)."""
  keys = jax.random.split(jax.random.PRNGKey(77), n_noise)
  values = jax.jit(jax.vmap(lambda k: losses.dsm_loss(score_fn, x0, k, sigma)))(keys)
  return float(jnp.mean(values) * sigma**2)


def main(_):
  steps = 60 if FLAGS.quick else 5000
  train = GMM.sample(jax.random.PRNGKey(0), 200)
  held_out = GMM.sample(jax.random.PRNGKey(1), 2000)
  x_test = GMM.sample(jax.random.PRNGKey(2), 4000)
  rows, fields = [], {}

  for sigma in common.subset(SIGMAS, 2):
    apply, params = common.single_level_mlp(jax.random.PRNGKey(3), 2, hidden=128)

    def loss(p, key, sigma=sigma, apply=apply):
      k_idx, k_noise = jax.random.split(key)
      x0 = train[jax.random.randint(k_idx, (128,), 0, train.shape[0])]
      return losses.dsm_loss(lambda x: apply(p, x) / sigma, x0, k_noise, sigma) * sigma**2

    params, _ = common.fit(loss, params, steps, jax.random.PRNGKey(4))
    score_fn = lambda x, p=params, sigma=sigma, apply=apply: apply(p, x) / sigma
    rows.append([f"{sigma}", "single-level", dsm_value(score_fn, train, sigma),
                 dsm_value(score_fn, held_out, sigma), *errors(score_fn, sigma, x_test)])
    fields[sigma] = score_fn

  # Multi-level: the continuous VE loss over sigma in [0.05, 1], read at each sigma.
  sde = sde_lib.VESDE(sigma_min=SIGMAS[0], sigma_max=SIGMAS[-1])
  model = mlp.MLP(mlp.MLPConfig(hidden=128, depth=2))
  params = model.init(jax.random.PRNGKey(3), jnp.zeros((1, 2)), jnp.zeros((1,)))

  def multi_loss(p, key):
    k_idx, k_loss = jax.random.split(key)
    x0 = train[jax.random.randint(k_idx, (128,), 0, train.shape[0])]
    return losses.sde_loss(parameterizations.get_score_fn(model.apply, p, sde), sde, x0, k_loss)

  params, _ = common.fit(multi_loss, params, steps, jax.random.PRNGKey(4))
  multi = parameterizations.get_score_fn(model.apply, params, sde)
  for sigma in common.subset(SIGMAS, 2):
    t = float(np.log(sigma / sde.sigma_min) / np.log(sde.sigma_max / sde.sigma_min)) * sde.T
    score_fn = lambda x, t=t: multi(x, jnp.full((x.shape[0],), t))
    rows.append([f"{sigma}", "multi-level (VE)", dsm_value(score_fn, train, sigma),
                 dsm_value(score_fn, held_out, sigma), *errors(score_fn, sigma, x_test)])

  table = common.markdown_table(
      ["sigma", "training", "train DSM x sigma^2", "held-out DSM x sigma^2",
       "E||s - grad log p_sigma||^2", "E||s - grad log p||^2"], rows)
  shown = common.subset(SIGMAS, 2)
  fig, axes = plt.subplots(1, len(shown), figsize=(4 * len(shown), 4))
  grid = np.stack(np.meshgrid(np.linspace(-3.5, 3.5, 15), np.linspace(-3, 3.5, 15)), -1).reshape(-1, 2)
  for ax, sigma in zip(axes, shown):
    s = np.asarray(fields[sigma](jnp.asarray(grid, jnp.float32)))
    ax.quiver(grid[:, 0], grid[:, 1], s[:, 0], s[:, 1], color="C0")
    ax.scatter(*np.asarray(train).T, s=3, c="k")
    ax.set_title(f"single-level DSM, sigma = {sigma}")
  setup = (f"Training set: 200 points of the 2-D mixture (seed 0); held-out: 2000; errors on "
           f"4000 fresh points. MLP width 128, depth 2, {steps} Adam steps, batch 128, seed 4. "
           "DSM values are multiplied by sigma^2 (comparable across sigma up to the constant of "
           "Q8) and averaged over 20 noise draws. Figure: learned score fields over the "
           "training points.")
  common.write_outputs("q2_sigma_generalization", "Q2. Noise level and generalization in DSM",
                       setup, table, fig)


if __name__ == "__main__":
  app.run(main)

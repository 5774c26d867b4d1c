r"""Seed question 3: ESM vs ISM vs SSM vs DSM in practice.

Same network (residual MLP), same data (a 4-component Gaussian mixture in D dimensions,
whose score is known), same optimizer and steps; per objective and dimension: wall time
per step, the noise of the stochastic gradient at initialization (trace of its
covariance over minibatches and probes, relative to the squared mean gradient), the
final relative error E||s - grad log p||^2 / E||grad log p||^2 on fresh data, and how
many of the seeds diverged (non-finite loss or an error above the starting one).

  python -m experiments.q3_objectives [--quick]     # ~30 min
"""
import functools

from absl import app
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import losses
from experiments import common

FLAGS = common.FLAGS
DSM_SIGMA = 0.05


def objectives(gmm):
  """name -> loss(score_fn, x, key)."""
  return {
      "ESM": lambda s, x, k: losses.esm_loss(s, gmm.score, x),
      "ISM (exact trace)": lambda s, x, k: losses.ism_loss(s, x),
      "ISM (Hutchinson)": lambda s, x, k: losses.ism_loss(s, x, k, "hutchinson"),
      "SSM": lambda s, x, k: losses.ssm_loss(s, x, k),
      "SSM-VR": lambda s, x, k: losses.ssm_loss(s, x, k, variance_reduction=True),
      f"DSM (sigma={DSM_SIGMA})": lambda s, x, k: losses.dsm_loss(s, x, k, DSM_SIGMA),
  }


def main(_):
  dims = (2,) if FLAGS.quick else (2, 16, 64)
  steps = 50 if FLAGS.quick else 1000
  seeds = 1 if FLAGS.quick else 2
  batch = 128
  rows, curves = [], {}
  for dim in dims:
    gmm = common.mixture_nd(dim)
    x_test = gmm.sample(jax.random.PRNGKey(7), 4000)
    true_sq = jnp.mean(jnp.sum(gmm.score(x_test) ** 2, -1))
    for name, objective in common.subset(objectives(gmm).items(), 2):
      errors, diverged, times = [], 0, []
      for seed in range(seeds):
        apply, params = common.single_level_mlp(jax.random.PRNGKey(seed), dim, hidden=128)

        def loss(p, key, apply=apply, objective=objective):
          k_x, k_obj = jax.random.split(key)
          return objective(functools.partial(apply, p), gmm.sample(k_x, batch), k_obj)

        rel_error = jax.jit(lambda p, apply=apply: jnp.mean(
            jnp.sum((apply(p, x_test) - gmm.score(x_test)) ** 2, -1)) / true_sq)
        if seed == 0:
          grads = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))(
              params, jax.random.split(jax.random.PRNGKey(99), 64))
          flat = jnp.concatenate([g.reshape(64, -1) for g in jax.tree_util.tree_leaves(grads)], 1)
          noise = float(jnp.sum(jnp.var(flat, 0)) / jnp.sum(jnp.mean(flat, 0) ** 2))
        trained, step_losses, per_step = common.timed_fit(loss, params, steps,
                                                          jax.random.PRNGKey(seed + 10))
        times.append(per_step)
        error = float(rel_error(trained))
        if not (np.all(np.isfinite(np.asarray(step_losses))) and error < float(rel_error(params))):
          diverged += 1
        errors.append(error)
        if seed == 0:
          curves[(dim, name)] = np.asarray(step_losses)
      rows.append([dim, name, 1e3 * float(np.median(times)), noise, float(np.mean(errors)),
                   float(np.std(errors)), f"{diverged}/{seeds}"])
  table = common.markdown_table(
      ["D", "objective", "ms/step", "gradient noise/signal at init", "final rel. error (mean)",
       f"sd of the {seeds} seeds' errors", "diverged"], rows)
  fig, axes = plt.subplots(1, len(dims), figsize=(5 * len(dims), 4), squeeze=False)
  axes = axes[0]
  for ax, dim in zip(axes, dims):
    for (d, name), values in curves.items():
      if d == dim:
        ax.plot(values - values.min() + 1e-3, label=name, lw=0.8)
    ax.set_yscale("log")
    ax.set_title(f"D = {dim}: loss - min (seed 0)")
    ax.set_xlabel("step")
  axes[0].legend(fontsize=7)
  setup = (f"Mixture of 4 Gaussians (std 0.5, weights 0.1-0.4) in D dimensions; residual MLP "
           f"width 128; Adam 3e-3, batch {batch}, {steps} steps, {seeds} seeds (their errors' "
           "sd is np.std, with 2 seeds half their difference: a spread, not a standard error). "
           "DSM learns the "
           f"score of the data smoothed by sigma = {DSM_SIGMA}, a bias of only 1e-4 here: its "
           "error is gradient noise (q3_dsm_noise below); ISM/SSM/ESM target the data score itself. Gradient noise: 64 "
           "minibatch (and probe) draws at the initial parameters (zero output layer: s = 0). ESM needs the true score "
           "and is listed as the reference it cannot be in practice.")
  common.write_outputs("q3_objectives", "Q3. ESM, ISM, SSM and DSM in practice", setup, table, fig)


if __name__ == "__main__":
  app.run(main)

r"""Seed question 3, DSM's error: smoothing bias or gradient noise?

DSM at one noise level sigma learns grad log p_sigma, the score of the data smoothed by
sigma, instead of grad log p: its error against the data score has a bias part,
B(sigma) = E_p ||grad log p_sigma - grad log p||^2 / E_p ||grad log p||^2 (exact here, the
mixture staying a mixture), and a part from training on noisy gradients, whose noise
grows as D / sigma^2 (the target -eps / sigma has squared norm D / sigma^2). Q3's mixture,
network, optimizer and budget (q3_objectives.py) for sigma from 0.01 to 0.5: the bias,
the gradient noise/signal at initialization (and that times sigma^2 / D), and the final
relative error of DSM and of DSM with the zero-mean control variate (2 / sigma) eps . s(x0)
(`losses.dsm_loss(control_variate=True)`: same expected gradient, the D / sigma^2 part
cancelled to first order).

  python -m experiments.q3_dsm_noise [--quick]     # ~6 min
"""
import functools

from absl import app
import jax
import jax.numpy as jnp
import numpy as np

import losses
from experiments import common
from experiments import q3_objectives

plt = common.plt
FLAGS = common.FLAGS


def main(_):
  dims = (2,) if FLAGS.quick else (2, 16, 64)
  sigmas = (0.05, 0.2) if FLAGS.quick else (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
  steps = 50 if FLAGS.quick else 1000
  seeds = 1 if FLAGS.quick else 2
  batch = 128
  rows, errors_at = [], {}
  for dim in dims:
    gmm = q3_objectives.mixture(dim)
    x_test = gmm.sample(jax.random.PRNGKey(7), 4000)
    true_score = gmm.score(x_test)
    true_sq = float(jnp.mean(jnp.sum(true_score**2, -1)))
    for sigma in sigmas:
      bias = float(jnp.mean(jnp.sum((gmm.smoothed(sigma).score(x_test) - true_score) ** 2, -1))) / true_sq
      row = [dim, sigma, f"{bias:.2e}"]
      for control_variate in (False, True):
        objective = functools.partial(losses.dsm_loss, sigma=sigma, control_variate=control_variate)
        errors = []
        for seed in range(seeds):
          apply, params = common.single_level_mlp(jax.random.PRNGKey(seed), dim, hidden=128)

          def loss(p, key, apply=apply, objective=objective):
            k_x, k_obj = jax.random.split(key)
            return objective(functools.partial(apply, p), gmm.sample(k_x, batch), k_obj)

          if seed == 0:
            grads = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))(
                params, jax.random.split(jax.random.PRNGKey(99), 64))
            flat = jnp.concatenate([g.reshape(64, -1) for g in jax.tree_util.tree_leaves(grads)], 1)
            noise = float(jnp.sum(jnp.var(flat, 0)) / jnp.sum(jnp.mean(flat, 0) ** 2))
          trained, _ = common.make_fit(loss, steps)(params, jax.random.PRNGKey(seed + 10))
          errors.append(float(jnp.mean(jnp.sum((apply(trained, x_test) - true_score) ** 2, -1)))
                        / true_sq)
        errors_at[(dim, sigma, control_variate)] = np.mean(errors)
        row += [f"{noise:.3g}", f"{noise * sigma**2 / dim:.3g}" if not control_variate else "",
                f"{np.mean(errors):.3g} ± {np.std(errors):.2g}"]
      rows.append([v for v in row if v != ""])
  table = common.markdown_table(
      ["D", "sigma", "bias B(sigma)", "DSM: grad noise/signal", "x sigma^2 / D",
       "DSM: final rel. error", "DSM + control variate: grad noise/signal",
       "DSM + control variate: final rel. error"], rows)
  fig, axes = plt.subplots(1, len(dims), figsize=(5 * len(dims), 4), squeeze=False)
  for ax, dim in zip(axes[0], dims):
    gmm = q3_objectives.mixture(dim)
    ax.loglog(sigmas, [errors_at[(dim, s, False)] for s in sigmas], "o-", label="DSM")
    ax.loglog(sigmas, [errors_at[(dim, s, True)] for s in sigmas], "s-", label="DSM + control variate")
    ax.loglog(sigmas, [float(r[2]) for r in rows if r[0] == dim], "k--", label="bias B(sigma)")
    ax.set_xlabel("sigma")
    ax.set_ylabel("relative error against grad log p")
    ax.set_title(f"D = {dim}")
  axes[0, 0].legend(fontsize=8)
  setup = (
      f"Q3's mixture of 4 Gaussians in D dimensions, residual MLP width 128, Adam 3e-3, batch "
      f"{batch}, {steps} steps, {seeds} seeds (final error: mean ± sd over seeds). Bias: "
      "exact smoothed score against the data score at 4000 test points. Gradient "
      "noise/signal: trace of the covariance of 64 minibatch gradients over the squared "
      "mean gradient, at initialization (zero output layer).")
  common.write_outputs("q3_dsm_noise", "Q3, continued: DSM's error is gradient noise, not bias",
                       setup, table, fig)


if __name__ == "__main__":
  app.run(main)

r"""Seed question 1: why is the score easier to learn than the density?

The same unnormalized model, log p~(x; L) = -x^T L L^T x / 2 (a Gaussian with unknown
precision Lambda = L L^T, treated as if its normalizer were unknown), fitted to the same
data two ways, with the same optimizer and steps, as the dimension D grows:

* maximum likelihood needs log Z(L) = log int exp(-x^T Lambda x / 2) dx, here by
  trapezoid quadrature on a grid of G^D points (G = 16 per axis) at every step;
* score matching (ISM, `losses.ism_loss`) needs only s(x) = -Lambda x and its trace.

Columns: cost per step, points the normalizer needs, and the relative error of the
estimated precision. Both are consistent; only one of them is feasible as D grows.

  python -m experiments.q1_score_vs_density [--quick]     # ~1 min
"""
from absl import app
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import losses
from experiments import common

FLAGS = common.FLAGS
G = 16          # quadrature points per axis
HALF_WIDTH = 6.0


def true_precision(dim):
  q, _ = jnp.linalg.qr(jax.random.normal(jax.random.PRNGKey(dim), (dim, dim)))
  return q @ jnp.diag(jnp.linspace(0.6, 1.6, dim)) @ q.T


def precision(l):
  return l @ l.T + 1e-3 * jnp.eye(l.shape[0])


def ml_loss_fn(x, dim):
  axis = jnp.linspace(-HALF_WIDTH, HALF_WIDTH, G)
  grid = jnp.stack(jnp.meshgrid(*([axis] * dim), indexing="ij"), -1).reshape(-1, dim)
  weights = jnp.full((G,), axis[1] - axis[0]).at[0].multiply(0.5).at[-1].multiply(0.5)
  log_w = jnp.sum(jnp.log(jnp.stack(jnp.meshgrid(*([weights] * dim), indexing="ij"), -1)
                          .reshape(-1, dim)), -1)

  def loss(l):
    lam = precision(l)
    energy = lambda y: 0.5 * jnp.sum((y @ lam) * y, -1)
    log_z = jax.nn.logsumexp(log_w - energy(grid))
    return jnp.mean(energy(x)) + log_z

  return loss


def sm_loss_fn(x):
  return lambda l: losses.ism_loss(lambda y: -y @ precision(l), x)


def fit_timed(loss, dim, steps):
  params, _, per_step = common.timed_fit(lambda l, k: loss(l), jnp.eye(dim), steps,
                                         jax.random.PRNGKey(0), lr=3e-2)
  return params, per_step


def main(_):
  dims = (1, 2, 3) if FLAGS.quick else (1, 2, 3, 4, 5)
  steps = 50 if FLAGS.quick else 600
  n = 5000
  rows, cost_ml, cost_sm = [], [], []
  for dim in dims:
    lam = true_precision(dim)
    x = jax.random.multivariate_normal(jax.random.PRNGKey(1), jnp.zeros(dim), jnp.linalg.inv(lam), (n,))
    l_ml, t_ml = fit_timed(ml_loss_fn(x, dim), dim, steps)
    l_sm, t_sm = fit_timed(sm_loss_fn(x), dim, steps)
    closed = jnp.linalg.inv(jnp.cov(x.T).reshape(dim, dim))     # the exact MLE, for reference
    err = lambda est: float(jnp.linalg.norm(est - lam) / jnp.linalg.norm(lam))
    rows.append([dim, G**dim, 1e3 * t_ml, 1e3 * t_sm, t_ml / t_sm, err(precision(l_ml)),
                 err(precision(l_sm)), err(closed)])
    cost_ml.append(t_ml)
    cost_sm.append(t_sm)
  per_point = cost_ml[-1] / G ** dims[-1]      # seconds per quadrature point, largest D
  for dim in (10, 100):
    rows.append([dim, f"{float(G)**dim:.1e}", f"~{1e3 * per_point * float(G)**dim:.1e} (extrapolated)",
                 "-", "-", "-", "-", "-"])
  table = common.markdown_table(
      ["D", "quadrature points", "ML ms/step", "ISM ms/step", "cost ratio", "ML rel. error",
       "ISM rel. error", "exact MLE rel. error"], rows)
  fig, ax = plt.subplots(figsize=(6, 4))
  ax.semilogy(dims, 1e3 * np.array(cost_ml), "o-", label="maximum likelihood (quadrature Z)")
  ax.semilogy(dims, 1e3 * np.array(cost_sm), "s-", label="score matching (ISM)")
  ax.set_xlabel("dimension D")
  ax.set_ylabel("ms per optimizer step")
  ax.legend()
  setup = (f"Gaussian data, n = {n} (seed 1), precision eigenvalues 0.6-1.6 in a random basis; "
           f"both fits: Adam (lr 0.03) on L from the identity, {steps} steps, Lambda = L L^T. "
           f"Quadrature: trapezoid, {G} points per axis on [-{HALF_WIDTH}, {HALF_WIDTH}]. The "
           "errors of both estimators sit at the sampling error of n points (the exact MLE "
           "column); the cost of the likelihood grows as G^D, that of score matching as D^2.")
  common.write_outputs("q1_score_vs_density", "Q1. Why the score is easier than the density",
                       setup, table, fig)


if __name__ == "__main__":
  app.run(main)

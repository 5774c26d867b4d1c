r"""Reproduced: Vincent (2010/2011): the denoising autoencoder objective is DSM.

For a reconstruction r and x~ = x + sigma eps, with the score s(x~) = (r(x~) - x~) / sigma^2,

  J_DSM = E ||s(x~) - (x - x~) / sigma^2||^2 = E ||r(x~) - x||^2 / sigma^4 = J_DAE / sigma^4,

so the two objectives have the same minimizers and proportional gradients. Checked
along the training trajectory of the tied-weight sigmoid autoencoder of Q6: both
losses on the same noisy pairs, their ratio, and the cosine of their gradients.

  python -m experiments.r2_vincent_dae_dsm [--quick]     # ~10 s
"""
from absl import app
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import datasets
from experiments import common
from experiments.q6_dae_vs_diffusion_energy import TiedSigmoidDAE

FLAGS = common.FLAGS
SIGMA = 0.5


def main(_):
  gmm = datasets.gaussian_mixture()
  dae = TiedSigmoidDAE()
  params = dae.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)))
  x0 = gmm.sample(jax.random.PRNGKey(1), 20_000)
  noisy = x0 + SIGMA * jax.random.normal(jax.random.PRNGKey(2), x0.shape)

  def j_dae(p):
    return jnp.mean(jnp.sum((dae.apply(p, noisy) - x0) ** 2, -1))

  def j_dsm(p):
    score = (dae.apply(p, noisy) - noisy) / SIGMA**2      # the DAE's implied score
    return jnp.mean(jnp.sum((score - (x0 - noisy) / SIGMA**2) ** 2, -1))

  def train_loss(p, key):
    k0, k1 = jax.random.split(key)
    x = gmm.sample(k0, 256)
    return jnp.mean(jnp.sum((dae.apply(p, x + SIGMA * jax.random.normal(k1, x.shape)) - x) ** 2, -1))

  rows, ratios = [], []
  chunk = 20 if FLAGS.quick else 500
  for stage in range(6):
    g_dae = jax.tree_util.tree_leaves(jax.grad(j_dae)(params))
    g_dsm = jax.tree_util.tree_leaves(jax.grad(j_dsm)(params))
    flat_dae = np.concatenate([np.ravel(g) for g in g_dae])
    flat_dsm = np.concatenate([np.ravel(g) for g in g_dsm])
    cosine = float(flat_dae @ flat_dsm / np.linalg.norm(flat_dae) / np.linalg.norm(flat_dsm))
    ratio = float(j_dsm(params) * SIGMA**4 / j_dae(params))
    rows.append([stage * chunk, float(j_dae(params)), float(j_dsm(params)), ratio, cosine])
    ratios.append(ratio)
    params, _ = common.fit(train_loss, params, chunk, jax.random.PRNGKey(10 + stage), lr=1e-2)
  table = common.markdown_table(["training step", "J_DAE", "J_DSM", "J_DSM sigma^4 / J_DAE", "cos(grad DAE, grad DSM)"], rows)
  fig, ax = plt.subplots(figsize=(5.5, 4))
  ax.plot([r[0] for r in rows], [r[1] for r in rows], "o-", label="J_DAE")
  ax.plot([r[0] for r in rows], [r[2] * SIGMA**4 for r in rows], "x--", label="J_DSM x sigma^4")
  ax.set_xlabel("training step")
  ax.legend()
  setup = (f"2-D mixture, sigma = {SIGMA}, 20,000 fixed noisy pairs (seeds 1, 2); the autoencoder is "
           "trained between rows on fresh pairs. The ratio is 1 and the gradients parallel to "
           "float32 precision at every stage: the identity holds for any parameters, not only "
           "at the optimum.")
  common.write_outputs("r2_vincent_dae_dsm", "Reproduced: Vincent (2010), DAE = DSM", setup, table, fig)


if __name__ == "__main__":
  app.run(main)

r"""Seed question 5: is DSM self-supervised learning of the score?

The regression target of DSM is built from the data alone (x0 and the noise it drew),
and its minimizer is a denoiser: Tweedie's formula E[x0 | x] = x + sigma^2 grad log
p_sigma(x). Checked three ways on a 1-D mixture: (1) the empirical conditional mean of
x0 in bins of x against Tweedie with the exact smoothed score (z-scores from the bin
standard errors); (2) an MLP denoiser trained by plain MSE regression x -> x0 (a
denoising autoencoder, no score anywhere); (3) an MLP trained by DSM, turned into a
denoiser by Tweedie. (2) and (3) both land on the exact Tweedie curve.

  python -m experiments.q5_tweedie [--quick]     # ~40 s
"""
from absl import app
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import losses
from experiments import common

FLAGS = common.FLAGS


def binned_check(sigma, n):
  x0 = np.asarray(common.MIXTURE_1D.sample(jax.random.PRNGKey(0), n), np.float64)[:, 0]
  x = x0 + sigma * np.asarray(jax.random.normal(jax.random.PRNGKey(1), (n,)), np.float64)
  tweedie = x + sigma**2 * np.asarray(common.MIXTURE_1D.smoothed(sigma).score(jnp.asarray(x[:, None], jnp.float32)))[:, 0]
  edges = np.linspace(-4, 5, 46)
  z_scores = []
  for lo, hi in zip(edges[:-1], edges[1:]):
    inside = (x >= lo) & (x < hi)
    if inside.sum() < 200:
      continue
    diff = x0[inside] - tweedie[inside]          # E[x0 - Tweedie(x) | bin] = 0 exactly
    z_scores.append(diff.mean() / (diff.std(ddof=1) / np.sqrt(inside.sum())))
  return np.array(z_scores), x, x0, tweedie


def main(_):
  n_bins_samples = 200_000 if FLAGS.quick else 4_000_000
  steps = 60 if FLAGS.quick else 4000
  rows, curves = [], {}
  for sigma in common.subset((0.3, 1.0)):
    z, _, _, _ = binned_check(sigma, n_bins_samples)
    apply, params = common.single_level_mlp(jax.random.PRNGKey(2), 1)
    batch = 512

    def dae_loss(p, key):
      k0, k1 = jax.random.split(key)
      x0 = common.MIXTURE_1D.sample(k0, batch)
      noisy = x0 + sigma * jax.random.normal(k1, x0.shape)
      return jnp.mean(jnp.sum((noisy + apply(p, noisy) - x0) ** 2, -1))

    def dsm_loss(p, key):
      k0, k1 = jax.random.split(key)
      return losses.dsm_loss(lambda x: apply(p, x) / sigma, common.MIXTURE_1D.sample(k0, batch), k1, sigma)

    dae_params, _ = common.fit(dae_loss, params, steps, jax.random.PRNGKey(3))
    dsm_params, _ = common.fit(dsm_loss, params, steps, jax.random.PRNGKey(3))
    x = jnp.linspace(-4.0, 5.0, 400)[:, None]
    exact = x + sigma**2 * common.MIXTURE_1D.smoothed(sigma).score(x)
    dae = x + apply(dae_params, x)
    dsm = x + sigma**2 * apply(dsm_params, x) / sigma
    weight = jnp.exp(common.MIXTURE_1D.smoothed(sigma).log_prob(x))      # RMSE under p_sigma
    rmse = lambda d: float(jnp.sqrt(jnp.sum(weight * (d - exact)[:, 0] ** 2) / jnp.sum(weight)))
    rows.append([sigma, len(z), float(np.max(np.abs(z))), float(np.sqrt(np.mean(z**2))),
                 rmse(dae), rmse(dsm), rmse(x)])
    curves[sigma] = (np.asarray(x[:, 0]), np.asarray(exact[:, 0]), np.asarray(dae[:, 0]),
                     np.asarray(dsm[:, 0]))
  table = common.markdown_table(
      ["sigma", "bins", "max abs z (binned E[x0|x] vs Tweedie)", "rms z (1 if exact)",
       "RMSE DAE vs Tweedie", "RMSE DSM->Tweedie vs Tweedie", "RMSE identity vs Tweedie"], rows)
  fig, axes = plt.subplots(1, len(curves), figsize=(5.5 * len(curves), 4), squeeze=False)
  axes = axes[0]
  for ax, (sigma, (x, exact, dae, dsm)) in zip(axes, curves.items()):
    ax.plot(x, exact, "k", label="Tweedie, exact score")
    ax.plot(x, dae, "--", label="DAE (MSE regression)")
    ax.plot(x, dsm, ":", label="DSM score -> Tweedie")
    ax.set_title(f"E[x0 | x], sigma = {sigma}")
    ax.set_xlabel("x")
    ax.legend()
  setup = (f"1-D mixture (weights 0.2/0.5/0.3). Binned check: {n_bins_samples} pairs, 45 "
           "bins of width 0.2; a z-score is (mean of x0 - Tweedie(x) in the bin) / its SE, "
           "so an exact formula gives z ~ N(0, 1) (rms ~ 1). Networks: residual MLP width 64, "
           f"{steps} Adam steps, batch 512, seed 3. RMSEs are weighted by p_sigma; the identity "
           "row is the no-denoising baseline.")
  common.write_outputs("q5_tweedie", "Q5. DSM as self-supervised learning (Tweedie)", setup, table, fig)


if __name__ == "__main__":
  app.run(main)

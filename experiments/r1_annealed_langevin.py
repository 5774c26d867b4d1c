r"""Reproduced: Song & Ermon (2019), Section 3.2.2 / Figure 3.

A mixture of two far-apart Gaussians, weights 1/5 and 4/5, sampled with its exact
score. Plain Langevin dynamics cannot move mass between the separated modes, so it
keeps the split of its initial points (here uniform: ~1/2 each) instead of 1/5 : 4/5;
annealed Langevin dynamics (scores of the data smoothed by sigma_1 > ... > sigma_L)
recovers the weights.

  python -m experiments.r1_annealed_langevin [--quick]     # ~20 s
"""
from absl import app
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import densities
import sampling
import sde_lib
from experiments import common

FLAGS = common.FLAGS
MIXTURE = densities.GaussianMixture(means=jnp.array([[-5.0, -5.0], [5.0, 5.0]]),
                                    stds=jnp.array([1.0, 1.0]), weights=jnp.array([0.2, 0.8]))


def weight_of_first(x):
  first = np.asarray(x)[:, 0] + np.asarray(x)[:, 1] < 0
  return float(first.mean()), float(first.std(ddof=1) / np.sqrt(len(first)))


def main(_):
  n = 2000 if FLAGS.quick else 10_000
  init = jax.random.uniform(jax.random.PRNGKey(0), (n, 2), minval=-8.0, maxval=8.0)

  step = 0.01
  def langevin(x, k):
    return x + step * MIXTURE.score(x) + np.sqrt(2 * step) * jax.random.normal(k, x.shape), None
  plain, _ = jax.lax.scan(langevin, init, jax.random.split(jax.random.PRNGKey(1), 2000))

  # Annealed, as Song & Ermon's toy experiment: the VE family p_sigma = data * N(0, sigma^2),
  # sigma 20 -> 1 over 10 levels (t = 1 ... 0 on the VE grid), 100 Langevin steps per
  # level, step eps sigma_i^2 / sigma_L^2 with eps = 0.1, i.e. 2 (snr sigma_i)^2, snr^2 = 0.05.
  sde = sde_lib.VESDE(sigma_min=1.0, sigma_max=20.0, N=10)
  sampler = sampling.get_pc_sampler(sde, (n, 2), predictor="none", corrector="ald",
                                    snr=float(np.sqrt(0.05)), n_steps=100, eps=0.0)
  annealed, nfe = jax.jit(lambda k: sampler(k, MIXTURE.score_fn(sde)))(jax.random.PRNGKey(2))
  rows = [["true", 0.2, 0.0, "-"],
          ["Langevin dynamics (exact data score, 2000 steps)", *weight_of_first(plain), 2000],
          ["annealed Langevin dynamics (10 levels x 100 steps)", *weight_of_first(annealed), int(nfe)]]
  table = common.markdown_table(["sampler", "weight of the (-5, -5) mode", "SE", "score evaluations"], rows)
  fig, axes = plt.subplots(1, 3, figsize=(12, 4))
  exact = MIXTURE.sample(jax.random.PRNGKey(3), n)
  for ax, (title, x) in zip(axes, (("exact samples", exact), ("Langevin", plain), ("annealed Langevin", annealed))):
    ax.scatter(*np.asarray(x).T, s=1, alpha=0.4)
    ax.set_title(title)
    ax.set_xlim(-10, 10)
    ax.set_ylim(-10, 10)
  setup = (f"{n} chains from uniform on [-8, 8]^2 (seed 0). Langevin step 0.01. Annealed: "
           "sigma geometric from 20 to 1, step 0.1 sigma_i^2 (= 2 (snr sigma_i)^2, snr^2 = 0.05), "
           "as `sampling.ald_corrector`. "
           "The weight is the fraction of samples below the line x + y = 0, with its binomial SE. "
           "Song & Ermon report the same qualitative outcome (their Figure 3).")
  common.write_outputs("r1_annealed_langevin", "Reproduced: Song & Ermon (2019), annealed Langevin",
                       setup, table, fig)


if __name__ == "__main__":
  app.run(main)

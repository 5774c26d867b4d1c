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
LANGEVIN_STEPS = 1000
MIXTURE = densities.GaussianMixture(means=jnp.array([[-5.0, -5.0], [5.0, 5.0]]),
                                    stds=jnp.array([1.0, 1.0]), weights=jnp.array([0.2, 0.8]))


def weight_of_first(x):
  first = np.asarray(x)[:, 0] + np.asarray(x)[:, 1] < 0
  return float(first.mean()), float(first.std(ddof=1) / np.sqrt(len(first)))


def main(_):
  n = 2000 if FLAGS.quick else 10_000
  init = jax.random.uniform(jax.random.PRNGKey(0), (n, 2), minval=-8.0, maxval=8.0)

  # Song & Ermon's convention: x + (a / 2) score + sqrt(a) z; plain Langevin a = 0.1,
  # 1000 steps (their toy runner).
  a = 0.1
  def langevin(x, k):
    return x + a / 2 * MIXTURE.score(x) + np.sqrt(a) * jax.random.normal(k, x.shape), None
  plain, _ = jax.lax.scan(langevin, init, jax.random.split(jax.random.PRNGKey(1), LANGEVIN_STEPS))

  # Annealed: the VE family p_sigma = data * N(0, sigma^2), sigma 20 -> 1 geometric over 10
  # levels (t = 1 ... 0 on the VE grid), 100 steps per level, a_i = eps sigma_i^2 / sigma_L^2
  # with eps = 0.1, which is `sampling.ald_corrector` at snr^2 = eps / (4 sigma_L^2) = 0.025.
  sde = sde_lib.VESDE(sigma_min=1.0, sigma_max=20.0, N=10)
  rows = [["true", 0.2, 0.0, "-"],
          [f"Langevin dynamics (exact data score, {LANGEVIN_STEPS} steps)", *weight_of_first(plain),
           LANGEVIN_STEPS]]
  for seed, steps_per_level in ((2, 100), (3, 1000)):
    sampler = sampling.get_pc_sampler(sde, (n, 2), predictor="none", corrector="ald",
                                      snr=float(np.sqrt(a / 4)), n_steps=steps_per_level, eps=0.0)
    annealed, nfe = jax.jit(lambda k, s=sampler: s(k, MIXTURE.score_fn(sde), x_T=init))(
        jax.random.PRNGKey(seed))
    rows.append([f"annealed Langevin dynamics (10 levels x {steps_per_level} steps)",
                 *weight_of_first(annealed), int(nfe)])
    if steps_per_level == 100:
      shown = annealed
  table = common.markdown_table(
      ["sampler", "weight of the (-5, -5) mode", "SE", "score evaluations"], rows)
  (w_100, se_100), (w_1000, se_1000) = [(r[1], r[2]) for r in rows[2:]]
  fig, axes = plt.subplots(1, 3, figsize=(12, 4))
  exact = MIXTURE.sample(jax.random.PRNGKey(3), n)
  panels = (("exact samples", exact), ("Langevin", plain), ("annealed Langevin, 10 x 100", shown))
  for ax, (title, x) in zip(axes, panels):
    ax.scatter(*np.asarray(x).T, s=1, alpha=0.4)
    ax.set_title(title)
    ax.set_xlim(-10, 10)
    ax.set_ylim(-10, 10)
  setup = (
      f"{n} chains from uniform on [-8, 8]^2 (seed 0), Song & Ermon's initial distribution, for "
      "every sampler. "
      "Steps in their convention x + (a / 2) grad log p + sqrt(a) z (their Section 2.2 and Algorithm 1). "
      f"Langevin: a = 0.1, {LANGEVIN_STEPS} steps. Annealed: sigma geometric from 20 to 1 over "
      "10 levels, 100 steps each, a_i = 0.1 sigma_i^2 / sigma_L^2 (sigma_L = 1), i.e. "
      "`sampling.ald_corrector` at snr^2 = 0.025; each level uses the exact score of the data "
      "smoothed by N(0, sigma_i^2). These are the settings of their toy experiment (Section "
      "3.2.2, Figure 3), except that we draw 10,000 chains instead of 1280 to get the SE down. "
      "The weight is the fraction of samples below the line x + y = 0, with its binomial SE: "
      "plain Langevin keeps the uniform start's even split (its chains cannot cross between "
      "the modes), annealed Langevin comes close to 1/5 : 4/5, as in their Figure 3. At their "
      f"100 steps per level the weight is {w_100:.3f} ({(w_100 - 0.2) / se_100:+.1f} SE from "
      "1/5): the chains are not yet at equilibrium at the levels where the modes separate; at "
      f"1000 steps per level it is {w_1000:.3f} ({(w_1000 - 0.2) / se_1000:+.1f} SE; an "
      "independent run, seed 3).")
  common.write_outputs("r1_annealed_langevin", "Reproduced: Song & Ermon (2019), annealed Langevin",
                       setup, table, fig)


if __name__ == "__main__":
  app.run(main)

r"""Seed question 7: DSM with non-Gaussian noise.

DSM with any noise kernel q(x | x0) = k(x - x0) is minimized by the score of the data
smoothed by that kernel, p_k = p * k (the Vincent identity holds for any kernel). On a
1-D mixture with unit-variance-scaled Gaussian, Laplace and Student-t (5 dof) kernels
of the same std sigma: p_k by numerical convolution on a fine grid, its score by
differentiation, and networks trained to convergence by `losses.dsm_loss(noise=...)`
(cosine learning-rate decay, three seeds). In 1-D every score is a gradient, so a learned
score integrates to a density on the grid: its W1 distance to p_k is exact (no sampler).

The question is whether each network learns its own kernel's target rather than the
Gaussian one, which needs the networks' errors to be below the targets' separation.
As sigma -> 0 every kernel's target tends to the data score: for symmetric unit-variance
kernels, p_k = p + sigma^2 p'' / 2 + kappa sigma^4 p'''' / 24 + ..., so two kernels differ
first through their kurtosis kappa, at order sigma^4.

  python -m experiments.q7_non_gaussian_dsm [--quick]     # ~17 min
"""
from absl import app
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import losses
from experiments import common

FLAGS = common.FLAGS
KERNEL_DENSITIES = {   # unit-variance densities of eps
    "gaussian": lambda e: np.exp(-0.5 * e**2) / np.sqrt(2 * np.pi),
    "laplace": lambda e: np.exp(-np.sqrt(2) * np.abs(e)) / np.sqrt(2),
    "student_t": lambda e: (lambda s: (1 + (e / s) ** 2 / 5) ** -3 * 8 / (3 * np.pi * np.sqrt(5))
                            / s)(np.sqrt(3 / 5)),
}
GRID = np.linspace(-10, 11, 8401)            # spacing 0.0025
WINDOW = (GRID >= -4.5) & (GRID <= 5.5)      # where networks and W1 are evaluated


def smoothed(kernel, sigma):
  """(score, density) of p * k_sigma on GRID, by convolution and differences; sigma 0: p."""
  h = GRID[1] - GRID[0]
  data = np.exp(np.asarray(common.MIXTURE_1D.log_prob(jnp.asarray(GRID[:, None], jnp.float32)), np.float64))
  if sigma == 0:
    density = data
  else:
    offsets = np.arange(-(len(GRID) // 2), len(GRID) // 2 + 1) * h   # odd length, centred
    density = np.convolve(data, KERNEL_DENSITIES[kernel](offsets / sigma) / sigma, "same") * h
  return np.gradient(np.log(np.maximum(density, 1e-300)), h), density


def weighted_rmse(a, b, weight):
  return float(np.sqrt(np.sum(weight * (a - b) ** 2) / np.sum(weight)))


def w1_on_window(score_a, score_b):
  """W1 between the densities of two scores given on GRID[WINDOW] (each integrated and
  normalized there)."""
  x, h = GRID[WINDOW], GRID[1] - GRID[0]

  def cdf(score):
    log_density = np.concatenate([[0.0], np.cumsum((score[1:] + score[:-1]) / 2) * h])
    density = np.exp(log_density - log_density.max())
    cumulative = np.cumsum(density)
    return cumulative / cumulative[-1]

  return float(np.sum(np.abs(cdf(score_a) - cdf(score_b))) * (x[1] - x[0]))


def mean_se(values):
  if len(values) == 1:
    return f"{values[0]:.3f}"
  return f"{np.mean(values):.3f} ± {np.std(values, ddof=1) / np.sqrt(len(values)):.3f}"


def train(kernel, sigma, seed, steps, batch=1024):
  """A width-128 MLP score network fitted by DSM; returns its score on GRID[WINDOW]."""
  apply, params = common.single_level_mlp(jax.random.PRNGKey(seed), 1, hidden=128)

  def loss(p, key):
    k0, k1 = jax.random.split(key)
    return losses.dsm_loss(lambda x: apply(p, x) / sigma, common.MIXTURE_1D.sample(k0, batch), k1, sigma,
                           kernel)

  params, _ = common.fit(loss, params, steps, jax.random.PRNGKey(100 + seed),
                         lr=optax.cosine_decay_schedule(3e-3, steps))
  return np.asarray(apply(params, jnp.asarray(GRID[WINDOW][:, None], jnp.float32)))[:, 0] / sigma


SWEEP = (0.5, 0.25, 0.125, 0.0625, 0.03125)


def consistency_sweep(kernels) -> tuple[str, dict, list]:
  """Exact, by quadrature, over SWEEP: (the table of each target's weighted RMSE to the
  data score and to the Gaussian target, {kernel: [RMSE to the Gaussian target per
  sigma]}, [per sigma and kernel: RMSE to the data score / the Gaussian target's])."""
  data_score, _ = smoothed("gaussian", 0.0)
  separation = {k: [] for k in kernels if k != "gaussian"}
  rows, closeness = [], []
  for sigma in SWEEP:
    gauss, gauss_density = smoothed("gaussian", sigma)
    row = [sigma, weighted_rmse(gauss, data_score, gauss_density)]
    for kernel in separation:
      target, density = smoothed(kernel, sigma)
      separation[kernel].append(weighted_rmse(target, gauss, density))
      row += [weighted_rmse(target, data_score, density), separation[kernel][-1]]
      closeness.append(row[-2] / row[1])
    rows.append(row)
  table = common.markdown_table(
      ["sigma", "RMSE(gaussian target, data score)"]
      + [c for k in separation for c in (f"RMSE({k} target, data score)",
                                         f"RMSE({k} target, gaussian target)")], rows)
  return table, separation, closeness


def trained_networks(kernels, sigmas, seeds, steps) -> tuple[list, dict, list, list]:
  """(table rows, {(sigma, kernel): (last seed's learned score, target) on WINDOW}, the
  non-Gaussian networks' RMSE to their own target / the targets' separation, and their
  W1 to their own p * kernel / the W1 between p * kernel and p * Gaussian)."""
  rows, curves, fractions, w1_ratios = [], {}, [], []
  for sigma in sigmas:
    gauss_target, _ = smoothed("gaussian", sigma)
    for kernel in kernels:
      target, density = smoothed(kernel, sigma)
      weight = density[WINDOW]
      own, other, w1 = [], [], []
      for seed in seeds:
        print(f"sigma {sigma}, {kernel}, seed {seed}", flush=True)
        learned = train(kernel, sigma, seed, steps)
        own.append(weighted_rmse(learned, target[WINDOW], weight))
        other.append(weighted_rmse(learned, gauss_target[WINDOW], weight))
        w1.append(w1_on_window(learned, target[WINDOW]))
      curves[(sigma, kernel)] = (learned, target[WINDOW])
      if kernel != "gaussian":
        fractions.append(np.mean(own) / weighted_rmse(target[WINDOW], gauss_target[WINDOW],
                                                      weight))
        w1_ratios.append(np.mean(w1) / w1_on_window(target[WINDOW], gauss_target[WINDOW]))
      rows.append([sigma, kernel, weighted_rmse(target[WINDOW], gauss_target[WINDOW], weight),
                   mean_se(own), mean_se(other), mean_se(w1),
                   w1_on_window(target[WINDOW], gauss_target[WINDOW])])
  return rows, curves, fractions, w1_ratios


def _figure(kernels, sigma, seed, curves, separation):
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
  x = GRID[WINDOW]
  for i, kernel in enumerate(kernels):
    learned, exact = curves[(sigma, kernel)]
    axes[0].plot(x, exact, color=f"C{i}", label=f"score of p * {kernel}")
    axes[0].plot(x, learned, "--", color=f"C{i}", label=f"DSM, {kernel} noise (seed {seed})")
  axes[0].set(xlabel="x", title=f"sigma = {sigma}")
  axes[0].legend(fontsize=8)
  for kernel, values in separation.items():
    axes[1].loglog(SWEEP, values, "o-", label=f"{kernel} vs gaussian target")
  axes[1].loglog(SWEEP, np.array(SWEEP) ** 4 * separation["laplace"][0] / SWEEP[0] ** 4, "k:",
                 label="sigma^4")
  axes[1].set(xlabel="sigma", ylabel="weighted RMSE between targets")
  axes[1].legend(fontsize=8)
  return fig


def main(_):
  steps = 100 if FLAGS.quick else 12_000
  seeds = (0,) if FLAGS.quick else (0, 1, 2)
  sigmas = (0.5,) if FLAGS.quick else (0.5, 0.25)
  kernels = common.subset(KERNEL_DENSITIES, 2)
  sweep_table, separation, closeness = consistency_sweep(kernels)
  slopes = {k: np.polyfit(np.log(SWEEP[-2:]), np.log(v[-2:]), 1)[0] for k, v in separation.items()}
  rows, curves, fractions, w1_ratios = trained_networks(kernels, sigmas, seeds, steps)
  table = common.markdown_table(
      ["sigma", "kernel", "target separation: RMSE(own target, gaussian target)",
       "network: RMSE to own target", "network: RMSE to gaussian target",
       "network: W1(learned density, p * kernel)", "W1(p * kernel, p * gaussian)"], rows)
  setup = (
      f"1-D mixture (weights 0.2/0.5/0.3). Networks: MLP width 128, {steps} Adam steps, "
      f"learning rate 3e-3 with cosine decay to 0, batch 1024; mean ± SE over {len(seeds)} "
      "seeds (initialization and data). RMSEs weighted by p * kernel on [-4.5, 5.5]; W1 "
      "between densities integrated from the scores on the same window (exact, no sampler)."
      "\n\n"
      "In score, each network is closer to its own kernel's target than to the Gaussian one, "
      f"its error to its own target {min(fractions):.2f}-{max(fractions):.2f} of the targets' "
      "separation: DSM with Laplace or Student-t noise learns the score of the data smoothed "
      "by that kernel. In density the distinction is "
      f"{'not resolved' if max(w1_ratios) > 0.3 else 'resolved too'}: the learned densities' W1 "
      f"to their own p * kernel is {min(w1_ratios):.1f}-{max(w1_ratios):.1f} times the W1 "
      "between p * kernel and p * Gaussian. The two measures weigh errors differently: the "
      "RMSE weights the score error by the density, while W1 integrates it into the "
      "log-density, where errors in the low-density gaps between the modes move mass between "
      "them. What the table does not show: that a non-Gaussian kernel is better for anything. "
      f"Its target is {min(closeness):.2f}-{max(closeness):.2f} times as far from the data "
      "score as the Gaussian target of the same std (table below), and the diffusion "
      "machinery (reverse SDE, ODE, Tweedie) is built on the Gaussian kernel.\n\n"
      "Consistency as sigma -> 0 (exact, by quadrature): every target tends to the data score "
      "(at rate sigma^2), and the non-Gaussian targets approach the Gaussian one faster, with "
      f"log-log slopes {', '.join(f'{k} {v:.2f}' for k, v in slopes.items())} over the last "
      "halving (theory: 4, the kurtosis term).\n\n" + sweep_table)
  common.write_outputs("q7_non_gaussian_dsm", "Q7. DSM with non-Gaussian noise", setup, table,
                       _figure(kernels, sigmas[0], seeds[-1], curves, separation))


if __name__ == "__main__":
  app.run(main)

r"""The shape of Song et al. (2021) Table 1 on a known density, with the exact score.

Rows: predictors (ancestral sampling with score_sde's variances: the posterior's for VE,
beta for VP; reverse diffusion; probability flow); columns:
P1000, P2000 (predictor only, N steps), C2000 (Langevin corrector only, 2000 steps),
PC1000 (predictor + one Langevin step, N = 1000); then the adaptive probability-flow
ODE and the few-step samplers at 10-35 NFE. The score is the mixture's exact score,
so every difference is the sampler's. Score: sliced Wasserstein distance (x100) to a
fresh data set of the same size, beside the floor of two fresh data sets.

  python -m experiments.table1_samplers [--quick] [--outdir results]

Takes about 2 minutes on 2 CPU cores.
"""
import functools

from absl import app
import jax
import matplotlib.pyplot as plt
import numpy as np

import datasets
import evaluation
import sampling
import sde_lib
from experiments import common

FLAGS = common.FLAGS
GMM = datasets.gaussian_mixture()


def score_samples(x, n):
  """Sliced Wasserstein x100 between samples x [n, 2] and fresh data (fixed seeds)."""
  data = GMM.sample(jax.random.PRNGKey(1000), n)
  return 100 * float(evaluation.sliced_wasserstein(jax.random.PRNGKey(1001), x, data))


def run_sampler(make, sde, n):
  sampler = make(sde, (n, 2))
  x, nfe = jax.jit(sampler, static_argnums=1)(jax.random.PRNGKey(0), GMM.score_fn(sde))
  return np.asarray(x), int(nfe)


def main(_):
  n = 256 if FLAGS.quick else 4000
  scale = 0.05 if FLAGS.quick else 1.0      # step counts shrink in quick mode
  steps = lambda k: max(int(k * scale), 4)
  sdes = {"VE": lambda k: sde_lib.VESDE(sigma_min=0.01, sigma_max=20.0, N=steps(k)),
          "VP": lambda k: sde_lib.VPSDE(N=steps(k))}
  predictors = {"ancestral sampling": dict(predictor="ancestral_sampling"),
                "reverse diffusion": dict(predictor="reverse_diffusion"),
                "probability flow": dict(predictor="reverse_diffusion", probability_flow=True)}
  snr = {"VE": 0.16, "VP": 0.05}   # Langevin signal-to-noise ratios; 0.16 as published for VE
  rows, shown = [], {}
  for sde_name, make_sde in common.subset(sdes.items()):
    corrector_only, _ = run_sampler(functools.partial(
        sampling.get_pc_sampler, predictor="none", corrector="langevin", snr=snr[sde_name]),
        make_sde(2000), n)
    for pred_name, kwargs in common.subset(predictors.items()):
      row = [sde_name, pred_name]
      for column, n_steps, corrector in (("P1000", 1000, "none"), ("P2000", 2000, "none"),
                                         ("PC1000", 1000, "langevin")):
        x, _ = run_sampler(functools.partial(sampling.get_pc_sampler, corrector=corrector,
                                             snr=snr[sde_name], **kwargs), make_sde(n_steps), n)
        row.append(score_samples(x, n))
        shown[f"{sde_name} {pred_name} {column}"] = x
      row.insert(4, score_samples(corrector_only, n))   # C2000 is one value per SDE
      rows.append(row)
    shown[f"{sde_name} C2000"] = corrector_only
  header = ["SDE", "predictor", "P1000", "P2000", "C2000", "PC1000"]
  table = common.markdown_table(header, rows)

  fast_rows = []
  for sde_name, make_sde in common.subset(sdes.items()):
    sde = make_sde(1000)
    x, nfe = run_sampler(sampling.get_ode_sampler, sde, n)
    fast_rows.append([sde_name, "probability-flow ODE (RK45, tol 1e-5)", nfe, score_samples(x, n)])
    for name, make, counts in (
        ("EDM Heun", lambda k: functools.partial(sampling.get_edm_sampler, num_steps=k), (5, 9, 17)),
        ("DPM-Solver++(2M)", lambda k: functools.partial(sampling.get_dpm_solver_sampler, num_steps=k), (10, 20, 35)),
        ("DDIM", lambda k: functools.partial(sampling.get_ddim_sampler, num_steps=k), (10, 20, 35))):
      for k in common.subset(counts):
        x, nfe = run_sampler(make(k), sde, n)
        fast_rows.append([sde_name, f"{name}, {k} steps", nfe, score_samples(x, n)])
        shown[f"{sde_name} {name} NFE {nfe}"] = x
  floor = 100 * float(evaluation.sliced_wasserstein(
      jax.random.PRNGKey(1001), GMM.sample(jax.random.PRNGKey(7), n), GMM.sample(jax.random.PRNGKey(1000), n)))
  fast_table = common.markdown_table(["SDE", "sampler", "NFE", "SW x100"], fast_rows)

  panels = [k for k in shown if "P2000" in k or "C2000" in k or "NFE" in k][:12]
  fig, axes = plt.subplots(3, 4, figsize=(14, 10.5), squeeze=False)
  for ax, key in zip(axes.flat, panels):
    ax.scatter(*shown[key][:2000].T, s=1, alpha=0.5)
    ax.set_title(key, fontsize=9)
    ax.set_xlim(-4, 4)
    ax.set_ylim(-3.5, 3.5)
  setup = (f"Exact mixture score (weights 0.2/0.3/0.5), {n} samples per cell, seed 0. "
           f"Cells: sliced Wasserstein distance x100 to fresh data (lower is better); two fresh "
           f"data sets are {floor:.3g} apart (the Monte-Carlo floor). Langevin snr: {snr}. Ancestral "
           "sampling uses score_sde's variances: the posterior's for VE, beta for VP.")
  common.write_outputs("table1_samplers", "Samplers on a known density (Song et al. 2021, Table 1 shape)",
                       setup, table + "\n\n" + fast_table, fig)


if __name__ == "__main__":
  app.run(main)

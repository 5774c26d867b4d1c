r"""The shape of Song et al. (2021) Table 1 on a known density, with the exact score.

Rows: predictors (ancestral sampling with score_sde's variances: the posterior's for VE,
beta for VP; reverse diffusion; probability flow); columns:
P1000, P2000 (predictor only, N steps), C2000 (Langevin corrector only, 2000 steps),
PC1000 (predictor + one Langevin step, N = 1000); then the adaptive probability-flow
ODE and the few-step samplers at 10-35 NFE. The score is the mixture's exact score,
so every difference is the sampler's. Score: sliced Wasserstein distance (x100) to a
fresh data set of the same size, beside the floor of two fresh data sets.

  python -m experiments.table1_samplers [--quick] [--outdir results]

Takes about 6 minutes on 2 CPU cores (5 seeds).
"""
import functools

from absl import app
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import datasets
import evaluation
import sampling
import sde_lib
from experiments import common

FLAGS = common.FLAGS
GMM = datasets.gaussian_mixture()


SEEDS = (0, 1, 2, 3, 4)


def score_samples(x, n, seed):
  """Sliced Wasserstein x100 between samples x [n, 2] and a fresh data set of the seed's own."""
  data = GMM.sample(jax.random.PRNGKey(1000 + seed), n)
  return 100 * float(evaluation.sliced_wasserstein(jax.random.PRNGKey(2000 + seed), x, data))


def run_sampler(make, sde, n, seeds):
  """(samples of the first seed, NFE, SW x100 of every seed): one compile for all seeds."""
  sampler = jax.jit(make(sde, (n, 2)), static_argnums=1)
  values, first = [], None
  for seed in seeds:
    x, nfe = sampler(jax.random.PRNGKey(seed), GMM.score_fn(sde))
    values.append(score_samples(np.asarray(x), n, seed))
    first = np.asarray(x) if first is None else first
  return first, int(nfe), values


def mean_se(values):
  if len(values) == 1:
    return f"{values[0]:.3g}"
  return f"{np.mean(values):.2f} ± {np.std(values, ddof=1) / np.sqrt(len(values)):.2f}"


def prior_mismatch_kl(sde, n=200_000):
  """KL(p_T || prior) in nats by Monte Carlo over p_T: (value, SE)."""
  k_x, k_z = jax.random.split(jax.random.PRNGKey(3))
  alpha_T, sigma_T = sde.marginal(jnp.asarray(sde.T))
  x_T = alpha_T * GMM.sample(k_x, n) + sigma_T * jax.random.normal(k_z, (n, 2))
  log_ratio = np.asarray(GMM.log_prob_t(sde, x_T, jnp.full((n,), sde.T))
                         - sde.prior_logp(x_T), np.float64)
  return log_ratio.mean(), log_ratio.std() / np.sqrt(n)


PREDICTORS = {"ancestral sampling": dict(predictor="ancestral_sampling"),
              "reverse diffusion": dict(predictor="reverse_diffusion"),
              "probability flow": dict(predictor="reverse_diffusion", probability_flow=True)}
SNR = {"VE": 0.16, "VP": 0.05}   # Langevin signal-to-noise ratios; 0.16 as published for VE
FEW_STEP = (   # name, sampler factory of a step count, step counts
    ("EDM Heun", lambda k: functools.partial(sampling.get_edm_sampler, num_steps=k), (5, 9, 17)),
    ("DPM-Solver++(2M)", lambda k: functools.partial(sampling.get_dpm_solver_sampler,
                                                     num_steps=k), (10, 20, 35)),
    ("DDIM", lambda k: functools.partial(sampling.get_ddim_sampler, num_steps=k), (10, 20, 35)))


def pc_rows(sdes, n, seeds, shown) -> list:
  """Table 1's rows: per SDE and predictor, P1000, P2000, C2000 (one per SDE) and PC1000;
  each cell's samples go into `shown`."""
  rows = []
  for sde_name, make_sde in common.subset(sdes.items()):
    corrector_only, _, c2000 = run_sampler(functools.partial(
        sampling.get_pc_sampler, predictor="none", corrector="langevin", snr=SNR[sde_name]),
        make_sde(2000), n, seeds)
    for pred_name, kwargs in common.subset(PREDICTORS.items()):
      row = [sde_name, pred_name]
      for column, n_steps, corrector in (("P1000", 1000, "none"), ("P2000", 2000, "none"),
                                         ("PC1000", 1000, "langevin")):
        x, _, values = run_sampler(functools.partial(
            sampling.get_pc_sampler, corrector=corrector, snr=SNR[sde_name], **kwargs),
            make_sde(n_steps), n, seeds)
        row.append(mean_se(values))
        shown[f"{sde_name} {pred_name} {column}"] = x
      row.insert(4, mean_se(c2000))   # C2000 is one value per SDE
      rows.append(row)
    shown[f"{sde_name} C2000"] = corrector_only
  return rows


def fast_rows(odes, sdes, n, seeds, shown) -> tuple[list, dict]:
  """(rows of the adaptive ODE per SDE of `odes` and of the few-step samplers per SDE of
  `sdes`, {SDE: the ODE's cell})."""
  rows, ode_cells = [], {}
  for sde_name, make_sde in common.subset(odes.items()):
    sde = make_sde(1000)
    x, nfe, values = run_sampler(sampling.get_ode_sampler, sde, n, seeds)
    rows.append([sde_name, "probability-flow ODE (RK45, tol 1e-5)", nfe, mean_se(values)])
    ode_cells[sde_name] = f"{mean_se(values)} (NFE {nfe})"
    if sde_name not in sdes:
      continue
    for name, make, counts in FEW_STEP:
      for k in common.subset(counts):
        x, nfe, values = run_sampler(make(k), sde, n, seeds)
        rows.append([sde_name, f"{name}, {k} steps", nfe, mean_se(values)])
        shown[f"{sde_name} {name} NFE {nfe}"] = x
  return rows, ode_cells


def _figure(shown):
  panels = [k for k in shown if "P2000" in k or "C2000" in k or "NFE" in k][:12]
  fig, axes = plt.subplots(3, 4, figsize=(14, 10.5), squeeze=False)
  for ax, key in zip(axes.flat, panels):
    ax.scatter(*shown[key][:2000].T, s=1, alpha=0.5)
    ax.set_title(key, fontsize=9)
    ax.set_xlim(-4, 4)
    ax.set_ylim(-3.5, 3.5)
  return fig


def main(_):
  n = 256 if FLAGS.quick else 4000
  scale = 0.05 if FLAGS.quick else 1.0      # step counts shrink in quick mode
  steps = lambda k: max(int(k * scale), 4)
  sdes = {"VE": lambda k: sde_lib.VESDE(sigma_min=0.01, sigma_max=20.0, N=steps(k)),
          "VP": lambda k: sde_lib.VPSDE(N=steps(k))}
  odes = dict(sdes, **{"VE, sigma_max 50": lambda k: sde_lib.VESDE(sigma_min=0.01, sigma_max=50.0,
                                                                    N=steps(k))})
  seeds = SEEDS[:2] if FLAGS.quick else SEEDS
  shown = {}
  table = common.markdown_table(["SDE", "predictor", "P1000", "P2000", "C2000", "PC1000"],
                                pc_rows(sdes, n, seeds, shown))
  few_step_rows, ode_cells = fast_rows(odes, sdes, n, seeds, shown)
  floors = [100 * float(evaluation.sliced_wasserstein(
      jax.random.PRNGKey(2000 + seed), GMM.sample(jax.random.PRNGKey(7 + seed), n),
      GMM.sample(jax.random.PRNGKey(1000 + seed), n))) for seed in seeds]
  kl_20 = prior_mismatch_kl(sdes["VE"](1000))
  kl_50 = prior_mismatch_kl(odes["VE, sigma_max 50"](1000))
  fast_table = common.markdown_table(["SDE", "sampler", "NFE", "SW x100"], few_step_rows)
  setup = (
      f"Exact mixture score (weights 0.2/0.3/0.5), {n} samples per cell. Cells: sliced "
      f"Wasserstein distance x100 to a fresh data set (lower is better), mean ± SE over "
      f"{len(seeds)} seeds, each with its own sampler key, data set and projections; two fresh "
      f"data sets are {mean_se(floors)} apart (the Monte-Carlo floor, same seeds). Langevin snr: "
      f"{SNR}. Ancestral sampling uses score_sde's variances: the posterior's for VE, beta for "
      "VP. VE: sigma_min 0.01, sigma_max 20 (as in the rest of the page), where the prior "
      f"N(0, 20^2 I) misses p_T by KL(p_T || prior) = {kl_20[0]:.2e} ± {kl_20[1]:.0e} nats "
      f"({kl_50[0]:.1e} ± {kl_50[1]:.0e} at sigma_max 50). The probability-flow ODE is a "
      "deterministic map, so it carries that mismatch into its output, while the reverse SDE "
      "contracts it (the closed-form section 'sampler bias' measures both: the ODE's output KL "
      "equals the prior's, the SDE's is a fraction of it). The adaptive ODE scores "
      f"{ode_cells.get('VE', '-')} at sigma_max 20, {ode_cells.get('VE, sigma_max 50', '-')} "
      f"at 50 and {ode_cells.get('VP', '-')} under VP; a larger sigma_max shrinks the prior "
      "mismatch but also changes the ODE's path and step count, so a difference between the "
      "first two is not the prior's alone. SW differences smaller than about twice the SEs "
      "are not resolved by these seeds; SW at this sample size cannot see errors below its "
      "floor.")
  common.write_outputs("table1_samplers",
                       "Samplers on a known density (Song et al. 2021, Table 1 shape)",
                       setup, table + "\n\n" + fast_table, _figure(shown))


if __name__ == "__main__":
  app.run(main)

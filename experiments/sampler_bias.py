r"""Exact sampler bias on Gaussian data, and what a mismatched prior does to it.

  python -m experiments.sampler_bias [--quick]

Data N(0, s^2), s = 0.5, in one dimension (a D-dimensional isotropic Gaussian multiplies
every KL by D). The exact score is linear, so every grid sampler (sampling.grid_sampler)
with its prior draw and noises fixed is affine in them and its output law is exactly
N(0, v_N) (densities.gaussian_sampler_variance). No Monte Carlo anywhere.

1. Bias against steps: KL(p_eps || sampler output) for each sampler and N, started from
   the exact p_T, so that only the discretization errs; the fitted slope of log KL
   against log N on the last three N is twice the weak order (KL ~ (v_N / v - 1)^2 / 4).
2. Prior mismatch (VE, sigma_min 0.01): the sampler starts from N(0, sigma_max^2)
   instead of p_T = N(0, s^2 + sigma_max^2). KL(p_T || prior) is carried through exactly
   by the probability-flow ODE (an invertible map applied to both laws preserves KL), while
   the reverse SDE contracts it. Measured at 512 steps for DDIM (ODE) and DDPM's
   ancestral step (SDE), beside each sampler's own 512-step bias from the exact p_T.
About 3 minutes on 2 CPU cores.
"""
import functools

from absl import app
import jax
import jax.numpy as jnp
import numpy as np

import densities
import sampling
import sde_lib
from experiments import common

plt = common.plt
STD = 0.5
EPS = 1e-3
SAMPLERS = {   # name -> (factory, evaluations per step)
    "DDIM (eta 0)": (sampling.get_ddim_sampler, 1),
    "DDPM ancestral (DDIM eta 1, log-SNR grid)": (
        functools.partial(sampling.get_ddim_sampler, eta=1.0, grid="logsnr"), 1),
    "EDM Heun": (sampling.get_edm_sampler, 2),
    "EDM Heun, churn 10": (functools.partial(sampling.get_edm_sampler, s_churn=10.0), 2),
    "DPM-Solver++(2M)": (sampling.get_dpm_solver_sampler, 1),
    "SDE-DPM-Solver++(2M)": (sampling.get_dpm_solver_sde_sampler, 1),
    "DPM-Solver++(3M)": (sampling.get_dpm_solver_3m_sampler, 1),
    "DPM-Solver++(2S)": (sampling.get_dpm_solver_2s_sampler, 2),
}


def gaussian_kl(v_p, v_q):
  """KL(N(0, v_p) || N(0, v_q)) in one dimension."""
  r = v_p / v_q
  return 0.5 * (r - 1.0 - np.log(r))


def target_variance(sde, t):
  alpha, sigma = sde.marginal(jnp.array([t]))
  return float(alpha[0] ** 2 * STD**2 + sigma[0] ** 2)


def output_variance(factory, sde, num_steps, prior_variance=None):
  make = lambda sde, shape, n: factory(sde, shape, num_steps=n, denoise=False)
  return float(densities.gaussian_sampler_variance(sde, make, num_steps, STD, prior_variance))


def main(_):
  with jax.enable_x64(True):     # KL down to 1e-12 needs float64 variances
    _run()


def _run():
  quick = common.FLAGS.quick
  steps = np.array([8, 16, 32] if quick else [8, 16, 32, 64, 128, 256])
  sdes = {"VP": sde_lib.VPSDE(), "VE (sigma_max 20)": sde_lib.VESDE(sigma_min=0.01, sigma_max=20.0)}
  rows, curves = [], {}
  for sde_name, sde in sdes.items():
    exact = target_variance(sde, EPS)
    for name, (factory, evals) in SAMPLERS.items():
      kls = np.array([gaussian_kl(exact, output_variance(factory, sde, int(n))) for n in steps])
      slope = np.polyfit(np.log(steps[-3:]), np.log(kls[-3:]), 1)[0]
      curves[(sde_name, name)] = (steps * evals, kls)
      rows.append([sde_name, name, *[f"{k:.2e}" for k in kls], f"{slope:.2f}", f"{-slope / 2:.2f}"])
  bias_table = common.markdown_table(
      ["SDE", "sampler", *[f"N={n}" for n in steps], "slope (last 3)", "weak order"], rows)

  mismatch_rows, carried = [], []
  sigma_maxes = (1.0, 5.0) if quick else (0.5, 1.0, 2.0, 5.0, 20.0, 80.0)
  n_final = 64 if quick else 512
  for sigma_max in sigma_maxes:
    sde = sde_lib.VESDE(sigma_min=0.01, sigma_max=sigma_max)
    exact = target_variance(sde, EPS)
    prior_kl = gaussian_kl(target_variance(sde, sde.T), sigma_max**2)
    row, fractions, biases = [f"{sigma_max:g}", f"{prior_kl:.3e}"], [], []
    for factory in (sampling.get_ddim_sampler,
                    functools.partial(sampling.get_ddim_sampler, eta=1.0, grid="logsnr")):
      mismatched = gaussian_kl(exact, output_variance(factory, sde, n_final, sigma_max**2))
      own_bias = gaussian_kl(exact, output_variance(factory, sde, n_final))
      row += [f"{mismatched:.3e}", f"{own_bias:.1e}"]
      fractions.append(mismatched / prior_kl)
      biases.append(own_bias)
    mismatch_rows.append(row + [f"{fractions[0]:.3g}", f"{fractions[1]:.3g}"])
    carried.append((sigma_max, prior_kl, *fractions, min(biases)))
  mismatch_table = common.markdown_table(
      ["sigma_max", "KL(p_T || prior)", f"DDIM eta 0: KL(p_eps || output), N={n_final}",
       "its bias from exact p_T", f"DDPM ancestral: KL, N={n_final}", "its bias from exact p_T",
       "DDIM KL / prior KL", "DDPM KL / prior KL"], mismatch_rows)
  largest = max(carried, key=lambda c: c[1])
  negligible = [c[0] for c in carried if c[1] < c[4]]
  orders = {name: [r[-1] for r in rows if r[1] == name] for name in SAMPLERS}
  last = {name: [r[-3] for r in rows if r[1] == name] for name in SAMPLERS}
  findings = (
      "**What the numbers show.** Weak orders (last column, VP / VE): " + "; ".join(
          f"{name} {' / '.join(o)}" for name, o in orders.items()) + ". DDIM and DDPM's "
      "ancestral step are first order; every other sampler here is second order, 3M "
      "included (its first- and second-order warm-up steps, as published, leave an "
      "O(h^2) error), though with the smallest constant: KL at the largest N "
      f"{' / '.join(last['DPM-Solver++(3M)'])} against 2M's "
      f"{' / '.join(last['DPM-Solver++(2M)'])}. Churn keeps EDM's Heun second order but "
      f"costs accuracy at equal N ({' / '.join(last['EDM Heun, churn 10'])} against "
      f"{' / '.join(last['EDM Heun'])}). Prior mismatch: where KL(p_T || prior) dominates "
      f"(sigma_max {largest[0]:g}: {largest[1]:.3g}) the ODE sampler's output KL is "
      f"{largest[2]:.3g} times it (theory: 1, the map being the same for both laws; the "
      "variance errors of prior and discretization multiply, so the ratio exceeds 1 where "
      f"both matter), the SDE sampler's {largest[3]:.3g} times it: the reverse SDE contracts "
      "the initial error, the ODE transports it unchanged. The mismatch falls below both "
      "samplers' own 512-step bias from sigma_max = "
      f"{min(negligible) if negligible else float('nan'):g} on. Not shown: non-Gaussian "
      "data (nonlinear score, non-Gaussian output law) and learned scores.")

  fig, axes = plt.subplots(1, len(sdes), figsize=(13, 4.8), squeeze=False)
  for ax, sde_name in zip(axes[0], sdes):
    for name in SAMPLERS:
      nfe, kls = curves[(sde_name, name)]
      ax.loglog(nfe, kls, "o-", label=name, markersize=3)
    ax.set_xlabel("network evaluations")
    ax.set_ylabel("KL(p_eps || output), exact")
    ax.set_title(sde_name)
  axes[0, 0].legend(fontsize=7)
  setup = (
      f"Data N(0, {STD}^2), one dimension; each sampler's output law computed exactly (its "
      "output is affine in the prior draw and noises; `densities.gaussian_sampler_variance`), "
      f"started from the exact p_T, stopping at eps = {EPS:g} without a final denoising step; "
      "KL(p_eps || output) against the number of steps N. The weak order is minus half the "
      "slope of log KL against log N over the last three N (KL ~ (v_N / v - 1)^2 / 4). "
      "No Monte Carlo: every digit is the sampler's.\n\n" + bias_table +
      "\n\n**Prior mismatch** (VE SDE, sigma_min 0.01): the sampler starts from the prior "
      f"N(0, sigma_max^2) instead of p_T = N(0, {STD}^2 + sigma_max^2).\n\n" + mismatch_table
      + "\n\n" + findings)
  common.write_outputs("sampler_bias", "Exact sampler bias on Gaussian data; prior mismatch",
                       setup, "", fig)


if __name__ == "__main__":
  app.run(main)

r"""Inpainting against the exact conditional: is Song et al.'s replacement method biased,
and does RePaint's resampling converge?

Data: the mixture of N((0, -3), I), N((0, 3), I), N((3, 0), I) with weights 0.2 / 0.3 /
0.5 under the VP SDE, with its exact score. Known: x1 = 0. The exact conditional of x2 is
the mixture of N(-3, 1), N(3, 1), N(0, 1) with weights 0.396 / 0.593 / 0.011
(`GaussianMixture.conditional`). Each method samples 4000 points (one seed); the table
gives P(x2 < -1.5), P(|x2| <= 1.5), P(x2 > 1.5) and E|x2| beside their exact values, and
the largest error in standard errors (binomial; sample std of |x2|).

  python -m experiments.inpainting_bias [--quick]     # ~2 min
"""
from absl import app
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import controllable_generation as cg
import densities
import sde_lib
from experiments import common

FLAGS = common.FLAGS
MIXTURE = densities.GaussianMixture(jnp.array([[0.0, -3.0], [0.0, 3.0], [3.0, 0.0]]),
                                    jnp.ones(3), jnp.array([0.2, 0.3, 0.5]))
STATISTICS = ("P(x2 < -1.5)", "P(|x2| <= 1.5)", "P(x2 > 1.5)", "E|x2|")


def statistics(x2):
  return np.array([np.mean(x2 < -1.5), np.mean(np.abs(x2) <= 1.5), np.mean(x2 > 1.5),
                   np.mean(np.abs(x2))])


def main(_):
  sde = sde_lib.get_sde("vpsde", N=1000)
  n = 500 if FLAGS.quick else 4000
  exact_x2 = np.asarray(MIXTURE.conditional(jnp.zeros(1), 1).sample(jax.random.PRNGKey(0),
                                                                     1_000_000))[:, 0]
  exact = statistics(exact_x2)
  se = np.r_[np.sqrt(exact[:3] * (1 - exact[:3]) / n), np.std(np.abs(exact_x2)) / np.sqrt(n)]
  settings = [("replacement", "none", 1, s) for s in (100, 300, 1000, 3000)]
  settings += [("replacement", "langevin", 1, s) for s in (100, 300, 1000)]
  settings += [("repaint", "none", r, s) for r, s in ((10, 100), (10, 300), (10, 1000),
                                                       (20, 1000))]
  if FLAGS.quick:
    settings = [("replacement", "none", 1, 50), ("repaint", "none", 2, 50)]
  rows, curves = [], {}
  for method, corrector, resamplings, steps in settings:
    inpaint = cg.get_inpainter(sde, (n, 2), method, resamplings, num_steps=steps,
                               corrector=corrector)
    x, nfe = jax.jit(lambda k, f=inpaint: f(k, MIXTURE.score_fn(sde), jnp.zeros((n, 2)),
                                              jnp.array([1.0, 0.0])))(jax.random.PRNGKey(1))
    measured = statistics(np.asarray(x)[:, 1])
    worst = float(np.max(np.abs(measured - exact) / se))
    label = method + (" + Langevin" if corrector != "none" else "") + (
        f", R = {resamplings}" if method == "repaint" else "")
    rows.append([label, steps, int(nfe), *[f"{v:.3f}" for v in measured], f"{worst:.1f}"])
    curves.setdefault(label, []).append((int(nfe), max(worst, 0.01)))
  rows.append(["exact", "", "", *[f"{v:.3f}" for v in exact], ""])
  table = common.markdown_table(["method", "steps", "NFE", *STATISTICS, "worst error / SE"], rows)
  fig, ax = plt.subplots(figsize=(5.5, 4))
  for label, points in curves.items():
    ax.plot(*zip(*points), "o-", label=label)
  ax.axhline(4, color="gray", ls="--", lw=0.8, label="4 SE")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("NFE")
  ax.set_ylabel("largest |error| / SE")
  ax.legend(fontsize=8)
  setup = (f"VP SDE, exact mixture score, x1 = 0 known; {n} samples per row, one seed; "
           "PC sampling with the reverse-diffusion predictor (and, where named, one "
           "Langevin corrector step, snr 0.16) on t = linspace(1, 1e-3, steps) and 0; "
           "the known coordinate replaced by a forward-diffused draw after every step. "
           "RePaint repeats each step R times, diffusing back in between. Standard errors "
           f"(n = {n}): {', '.join(f'{s:.4f}' for s in se)}.")
  common.write_outputs("inpainting_bias", "Inpainting: replacement vs RePaint against the exact "
                       "conditional", setup, table, fig)


if __name__ == "__main__":
  app.run(main)

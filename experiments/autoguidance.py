r"""Issue 33: autoguidance against classifier-free guidance, with exact scores.

The toy 2-D mixture p (datasets.gaussian_mixture: three components, weights 0.2 / 0.3 / 0.5),
the VP SDE, DPM-Solver++(2M) with 50 steps on the log-SNR grid. Every score is exact
(densities.py): no network stands between the guidance rule and what it does.

* Models. A mixture with component stds inflated by a factor k and weights moved a fraction
  f of the way to uniform is "degraded (k, f)". Two settings of the main model: the exact p
  (k = 1, f = 0), and an imperfect one, degraded (1.2, 0.25), the kind of error an
  under-trained network makes (too wide, too even). The weak model of autoguidance is
  degraded (1.5, 0.5): the same kind of error, larger.
* Guidance at Karras et al.'s w (w = 1: the main model alone), on the denoiser:
  autoguidance D_weak + w (D_main - D_weak) (controllable_generation.autoguidance), and
  classifier-free guidance D_uncond + w (D_cond - D_uncond) with the main model's exact
  component scores as the conditionals and its mixture score as the unconditional
  (controllable_generation.classifier_free_guidance at guidance_scale w - 1), each sample's
  class drawn from the main model's weights, so that at w = 1 both sample the main model.
* Per seed, n samples; measured: the exact NLL of the samples under the true p minus its
  entropy H(p) (quality: below 0, the samples sit where p is high); a Kozachenko-Leonenko
  nearest-neighbour entropy estimate minus the same estimate on n exact draws of p
  (variety); the within-component variance over the true one, averaged over the three
  components (samples assigned to their most likely component under p); the total-variation
  distance between the assigned fractions and p's weights; and, as one distance to p that
  counts every kind of error, the unbiased MMD^2 (Gaussian kernel, bandwidth 1) to n exact
  draws of p. Mean +- SE over the seeds.

Prediction (a heuristic, not exact: the guided ODE does not sample a product of
densities): where one component dominates, autoguidance acts like p_main^w p_weak^(1-w),
whose component variance over the true s^2 is 1 / (w / k_main^2 - (w - 1) / k_weak^2):
below 1 for the exact main (w > 1), and 1 for the imperfect main at
w* = (1 - 1/k_weak^2) / (1/k_main^2 - 1/k_weak^2) = 2.22. CFG's conditional and
unconditional scores agree inside a component far from the others, which suggests that
CFG moves mass between components without shrinking them; the table tests that.

  python -m experiments.autoguidance [--quick]     # ~2 min on 2 CPU cores
"""
import math

from absl import app
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from scipy import spatial
from scipy import special

import controllable_generation as cg
import datasets
import densities
import evaluation
import sampling
import sde_lib
from experiments import common

FLAGS = common.FLAGS
TRUE = datasets.gaussian_mixture()
SDE = sde_lib.VPSDE()
MAINS = {"exact": (1.0, 0.0), "imperfect": (1.2, 0.25)}
WEAK = (1.5, 0.5)
WEIGHTS = (1.0, 1.5, 2.0, 3.0, 4.0)
GUIDANCES = ("autoguidance", "CFG")


def degraded(k: float, f: float) -> densities.GaussianMixture:
  """TRUE with component stds times k and weights a fraction f of the way to uniform."""
  num = TRUE.weights.shape[0]
  return densities.GaussianMixture(TRUE.means, k * TRUE.stds,
                                   (1 - f) * TRUE.weights + f / num)


def product_variance_ratio(w: float, k_main: float, k_weak: float) -> float:
  """The component variance over the true one of p_main^w p_weak^(1-w) for Gaussian
  components of stds k_main s and k_weak s: 1 / (w / k_main^2 - (w - 1) / k_weak^2)."""
  return 1.0 / (w / k_main**2 - (w - 1) / k_weak**2)


def guided_score_fn(guidance: str, main: densities.GaussianMixture, weight):
  """The guided exact score of `guidance` at Karras's weight (a traced scalar) -> (score_fn
  of (x, t, labels [B]) ...). CFG's labels are the classes; autoguidance ignores them."""
  main_score = main.score_fn(SDE)
  if guidance == "autoguidance":
    guided = cg.autoguidance(main_score, degraded(*WEAK).score_fn(SDE), weight)
    return lambda x, t, labels: guided(x, t)
  num = main.weights.shape[0]
  components = [main.component(c).score_fn(SDE) for c in range(num)]

  def cond_score(x, t, y):          # label `num` is the null label: the mixture
    scores = jnp.stack([s(x, t) for s in components] + [main_score(x, t)])    # [K + 1, B, D]
    return scores[y, jnp.arange(x.shape[0])]

  return lambda x, t, labels: cg.classifier_free_guidance(
      cond_score, labels, weight - 1.0, null_label=num)(x, t)


def make_draw(guidance: str, main: densities.GaussianMixture, n: int):
  """draw(key, weight) -> n guided samples [n, 2] (jitted once)."""
  sampler = sampling.get_dpm_solver_sampler(SDE, (n, 2), num_steps=50)

  @jax.jit
  def draw(key, weight):
    k_labels, k_sample = jax.random.split(key)
    labels = jax.random.categorical(k_labels, jnp.log(main.weights), shape=(n,))
    score = guided_score_fn(guidance, main, weight)
    return sampler(k_sample, lambda x, t: score(x, t, labels))[0]

  return draw


def knn_entropy(x: np.ndarray, k: int = 5) -> float:
  """Kozachenko-Leonenko entropy estimate (nats) of samples x [n, d]:
  psi(n) - psi(k) + log V_d + (d / n) sum log eps_i, eps_i the distance to the k-th
  neighbour and V_d the volume of the unit d-ball."""
  n, d = x.shape
  eps = spatial.cKDTree(x).query(x, k + 1)[0][:, -1]
  log_volume = (d / 2) * math.log(math.pi) - special.gammaln(d / 2 + 1)
  return float(special.digamma(n) - special.digamma(k) + log_volume
               + d * np.mean(np.log(eps)))


def metrics(x: np.ndarray, entropy: float, reference_knn: float, exact: jax.Array) -> dict:
  """The measures of the module docstring for samples x [n, 2]; exact [n, 2]: draws of p."""
  xj = jnp.asarray(x)
  log_p = np.asarray(TRUE.log_prob(xj), np.float64)
  assigned = np.argmax(np.asarray(TRUE.log_responsibilities_t(
      SDE, xj, jnp.zeros(len(x)))), axis=1)
  fractions = np.bincount(assigned, minlength=3) / len(x)
  variances = [np.mean(np.var(x[assigned == c], axis=0, ddof=1)) / float(TRUE.stds[c]) ** 2
               for c in range(3) if np.sum(assigned == c) > 2]
  return {"nll_gap": float(-log_p.mean() - entropy),
          "entropy_gap": knn_entropy(x) - reference_knn,
          "variance_ratio": float(np.mean(variances)),
          "weight_tv": float(0.5 * np.abs(fractions - np.asarray(TRUE.weights)).sum()),
          "mmd2": float(evaluation.mmd2_unbiased(xj, exact))}


def run(seeds: int, n: int, weights) -> dict:
  """{(main, guidance, w): {measure: (mean, SE over seeds)}}."""
  big = TRUE.sample(jax.random.PRNGKey(99), 200_000)
  entropy = float(-jnp.mean(TRUE.log_prob(big)))
  exact = [TRUE.sample(jax.random.PRNGKey(1000 + s), n) for s in range(seeds)]
  reference_knn = float(np.mean([knn_entropy(np.asarray(e)) for e in exact]))
  results = {}
  for main_name, degradation in MAINS.items():
    main = degraded(*degradation)
    for guidance in GUIDANCES:
      draw = make_draw(guidance, main, n)
      for w in weights:
        per_seed = [metrics(np.asarray(draw(jax.random.PRNGKey(s), jnp.float32(w))),
                            entropy, reference_knn, exact[s]) for s in range(seeds)]
        results[main_name, guidance, w] = {
            m: (float(np.mean([r[m] for r in per_seed])),
                float(np.std([r[m] for r in per_seed], ddof=1) / np.sqrt(seeds)))
            for m in per_seed[0]}
  return results


def _pm(value, fmt="+.3f") -> str:
  return f"{value[0]:{fmt}} +- {value[1]:{fmt.lstrip('+')}}"


def _equal_variety(results, weights) -> str:
  """Autoguidance's NLL gap, interpolated along w, at the entropy CFG loses at w = 2 (the
  exact main model): quality at equal loss of variety."""
  w_cfg = 2.0 if 2.0 in weights else weights[-1]
  curve = lambda m: np.array([results["exact", "autoguidance", w][m][0] for w in weights])
  entropies, nlls = curve("entropy_gap"), curve("nll_gap")
  target, (cfg, cfg_se) = (results["exact", "CFG", w_cfg]["entropy_gap"][0],
                           results["exact", "CFG", w_cfg]["nll_gap"])
  if not entropies.min() <= target <= entropies.max():
    return (f"CFG's entropy loss at w = {w_cfg:g} ({target:+.3f}) lies outside autoguidance's "
            "range on this grid: no comparison at equal variety.")
  order = np.argsort(entropies)
  nll = float(np.interp(target, entropies[order], nlls[order]))
  se = math.hypot(cfg_se, max(results["exact", "autoguidance", w]["nll_gap"][1] for w in weights))
  verdict = ("autoguidance's samples sit higher under p" if nll < cfg - 2 * se else
             "CFG's samples sit higher under p" if nll > cfg + 2 * se else
             "the two sit equally high under p, within twice the SE")
  return (f"At equal loss of variety (CFG's entropy change at w = {w_cfg:g}, {target:+.3f} "
          f"nats), autoguidance's NLL gap, interpolated along w, is {nll:+.3f} against CFG's "
          f"{cfg:+.3f} +- {cfg_se:.3f}: {verdict}.")


def reading(results, weights) -> str:
  """Sentences computed from the table."""
  top = weights[-1]
  r = lambda main, guidance, m, w=top: results[main, guidance, w][m]
  best = {g: min(weights, key=lambda w, g=g: r("imperfect", g, "mmd2", w)[0]) for g in GUIDANCES}
  ag, cfg = (r("imperfect", g, "mmd2", best[g]) for g in GUIDANCES)
  apart = abs(ag[0] - cfg[0]) > 2 * math.hypot(ag[1], cfg[1])
  shrink = r("exact", "CFG", "variance_ratio")
  return (
      f"Reading. With the exact main model every w > 1 moves the samples away from p (MMD^2 "
      f"at w = {top:g}: autoguidance {_pm(r('exact', 'autoguidance', 'mmd2'), '.2e')}, CFG "
      f"{_pm(r('exact', 'CFG', 'mmd2'), '.2e')}, against {_pm(r('exact', 'CFG', 'mmd2', 1.0), '.2e')} at "
      f"w = 1); what differs is how. At w = {top:g} autoguidance puts the NLL gap at "
      f"{_pm(r('exact', 'autoguidance', 'nll_gap'))} nats, the within-component variance at "
      f"{r('exact', 'autoguidance', 'variance_ratio')[0]:.3f} of the truth (product "
      f"heuristic {product_variance_ratio(top, 1.0, WEAK[0]):.3f}) and the weights off by TV "
      f"{_pm(r('exact', 'autoguidance', 'weight_tv'))}; CFG puts the NLL gap at "
      f"{_pm(r('exact', 'CFG', 'nll_gap'))}, the variance at {shrink[0]:.3f} +- "
      f"{shrink[1]:.3f} and TV at {_pm(r('exact', 'CFG', 'weight_tv'))} (its classes are "
      f"drawn from the main model's weights, p's here: sampling noise), so CFG "
      + ("shrinks the components too, against the expectation above (the table does not "
         "say where along t it happens)"
         if shrink[0] + 2 * shrink[1] < 1 else "leaves the components' widths alone")
      + f". Entropy estimate minus exact draws': autoguidance "
      f"{_pm(r('exact', 'autoguidance', 'entropy_gap'))}, CFG "
      f"{_pm(r('exact', 'CFG', 'entropy_gap'))} nats: at equal w autoguidance loses "
      + ("more" if r("exact", "autoguidance", "entropy_gap")[0] < r("exact", "CFG", "entropy_gap")[0]
         else "less")
      + " variety than CFG here. " + _equal_variety(results, weights)
      + " With the imperfect main model (at w = 1: "
      f"variance ratio {r('imperfect', 'autoguidance', 'variance_ratio', 1.0)[0]:.3f}, NLL gap "
      f"{_pm(r('imperfect', 'autoguidance', 'nll_gap', 1.0))}, MMD^2 "
      f"{_pm(r('imperfect', 'autoguidance', 'mmd2', 1.0), '.2e')}), the w of least MMD^2 is "
      f"{best['autoguidance']:g} for autoguidance (MMD^2 {_pm(ag, '.2e')}, variance ratio "
      f"{r('imperfect', 'autoguidance', 'variance_ratio', best['autoguidance'])[0]:.3f}, TV "
      f"{r('imperfect', 'autoguidance', 'weight_tv', best['autoguidance'])[0]:.3f}) and "
      f"{best['CFG']:g} for CFG (MMD^2 {_pm(cfg, '.2e')}, variance ratio "
      f"{r('imperfect', 'CFG', 'variance_ratio', best['CFG'])[0]:.3f}): "
      + ((f"{'autoguidance' if ag[0] < cfg[0] else 'CFG'} comes closer to p, by more than "
          "twice the SE of the difference") if apart else
         "the two come equally close within twice the SE of the difference")
      + ". On this grid of w, and for a weak model whose error points along the main "
      "model's.")


NOTES = """What the numbers do not show. The models are exact mixtures degraded by hand, one
kind of error (too wide, too even), chosen so that the weak model errs the same way as the
imperfect main one, only more; a weak network's errors need not line up with its main
network's like this, which is the premise autoguidance rests on, not something measured
here. One sampler (DPM-Solver++(2M), 50 steps) and one SDE (VP); the nearest-neighbour
entropy estimate is biased, so only its difference from the same estimate on exact draws is
shown. Weak networks guiding a trained one (run B on Fashion-MNIST, FID / KID / precision /
recall against w) are on fashion_mnist_autoguidance.md."""


def main(_):
  seeds, n = (2, 500) if FLAGS.quick else (8, 4000)
  weights = (1.0, 2.0) if FLAGS.quick else WEIGHTS
  results = run(seeds, n, weights)
  rows = []
  for (main_name, guidance, w), values in results.items():
    prediction = (product_variance_ratio(w, MAINS[main_name][0], WEAK[0])
                  if guidance == "autoguidance" else float("nan"))
    rows.append([main_name, guidance, f"{w:g}", _pm(values["nll_gap"]),
                 _pm(values["entropy_gap"]), _pm(values["variance_ratio"]),
                 "-" if math.isnan(prediction) else f"{prediction:.3f}",
                 _pm(values["weight_tv"]), _pm(values["mmd2"], ".1e")])
  table = common.markdown_table(
      ["main model", "guidance", "w", "NLL under p - H(p) (nats)", "entropy est. - exact draws'",
       "component variance / true", "product heuristic", "weight TV", "MMD^2 to p"], rows)
  figure, axes = plt.subplots(1, 4, figsize=(17, 3.6))
  for main_name, style in (("exact", "-"), ("imperfect", "--")):
    for guidance, color in zip(GUIDANCES, ("C0", "C1")):
      for ax, m in zip(axes, ("nll_gap", "variance_ratio", "weight_tv", "mmd2")):
        mean = [results[main_name, guidance, w][m][0] for w in weights]
        se = [results[main_name, guidance, w][m][1] for w in weights]
        ax.errorbar(weights, mean, se, linestyle=style, color=color, marker="o",
                    label=f"{guidance}, {main_name} main")
  for ax, label in zip(axes, ("NLL under p - H(p)", "component variance / true", "weight TV",
                              "MMD^2 to exact draws")):
    ax.set_xlabel("w")
    ax.set_ylabel(label)
  axes[0].legend(fontsize=7)
  setup = (f"VP SDE, toy 2-D mixture, exact scores; DPM-Solver++(2M) 50 steps; {seeds} seeds "
           f"x {n} samples, mean +- SE over seeds. Weak model: stds x{WEAK[0]:g}, weights "
           f"{WEAK[1]:g} of the way to uniform; imperfect main: stds x{MAINS['imperfect'][0]:g}, "
           f"weights {MAINS['imperfect'][1]:g} of the way.")
  common.write_outputs("autoguidance", "Autoguidance against classifier-free guidance, exact "
                       "scores", setup, "\n\n".join([table, reading(results, weights), NOTES]),
                       figure)


if __name__ == "__main__":
  app.run(main)

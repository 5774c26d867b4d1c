r"""Issue 33 on Fashion-MNIST: autoguidance (Karras et al., 2024) of run B by weak versions
of itself, on the FID protocol.

The main model is the CPU VP run (configs/fashion_mnist/vp_ddpm_cpu.py; --main). Each weak
model (--weak, "workdir@step") guides it as D_w = D_weak + w (D - D_weak), at w in WEIGHTS:

* run B's own checkpoint at step 800 (trained a third as long);
* configs/fashion_mnist/vp_ddpm_cpu_weak.py (half width and a third as long: the paper's
  best weak models are both smaller and shorter-trained).

Every guided row samples with DDIM (eta 1, 20 steps). The main model alone (w = 1) is
sampled by the same DDIM at 20 steps, at 40 (the guided rows' number of network
evaluations) and at 100; its rounds are kept beside fashion_mnist_consistency's (same
folders and keys: its "teacher, DDIM eta 1, 20 / 100 steps" rows). Every row uses the same
sampling keys (common random numbers across w).

Scores: the Fashion-MNIST feature network on the uint8 protocol against the training split,
FID and KID mean ± SE over --sampling_seeds seeds of --num_samples samples, precision and
recall at equal set sizes. The sentences are computed (`conclusions`): a change against
w = 1 is called only where it exceeds twice its SE, the SEs added in quadrature as if the
rows were independent (shared keys are expected to correlate them positively, which would
make the true SE of a gap smaller: the rule errs towards "not resolved"). One main model:
the spread between training seeds is not measured.

  python -m experiments.fashion_mnist_autoguidance --main runs/fmnist_cpu \
      --weak runs/fmnist_cpu@800,runs/fmnist_weak@800

Drawing every row took 35 min on the 2 quiet cores (the 20- and 100-step unguided rows
were on disk). Samples are kept under <main>/autoguidance_page/ (resumable). Writes
<outdir>/fashion_mnist_autoguidance.{md,png}.
"""
import os
import time

from absl import app
from absl import flags
import jax
import matplotlib.pyplot as plt
import numpy as np

from configs.fashion_mnist import vp_ddpm_cpu
from experiments import common
from experiments import fashion_mnist_consistency
from infra import errors
from infra import weights
from run import build
from run import evaluate

flags.DEFINE_string("main", "runs/fmnist_cpu", "The guided run's workdir (vp_ddpm_cpu).")
flags.DEFINE_list("weak", ["runs/fmnist_cpu@800", "runs/fmnist_weak@800"],
                  "Weak models, each workdir@checkpoint_step.")
FLAGS = common.FLAGS

WEIGHTS = (1.5, 2.0, 3.0)
NUM_STEPS = 20
UNGUIDED_STEPS = (NUM_STEPS, 2 * NUM_STEPS, 100)
METRICS = ("fid", "kid", "precision", "recall")


def parse_weak(spec: str) -> tuple[str, int]:
  """"workdir@step" -> (workdir, step); anything else is a one-line UsageError."""
  workdir, _, step = spec.rpartition("@")
  if not workdir or not step.isdigit():
    raise app.UsageError(f"--weak={spec!r}: expected workdir@checkpoint_step, e.g. "
                         "runs/fmnist_cpu@800")
  return workdir, int(step)


def weak_label(workdir: str, step: int) -> str:
  same = os.path.normpath(workdir) == os.path.normpath(FLAGS.main)
  return f"{'main run' if same else os.path.basename(os.path.normpath(workdir))} at step {step}"


def _experiment(weak=None, weight=1.0, num_steps=NUM_STEPS):
  """Run B's config, DDIM eta 1 at num_steps steps on the table's FID protocol, guided by
  weak = (workdir, step) at `weight` (None: unguided)."""
  config = vp_ddpm_cpu.get_config()
  config.data.data_dir = FLAGS.data_dir
  e, s = config.eval, config.sampling
  e.feature_net, e.fid_protocol, e.fid_reference = "auto", "uint8", "train"
  s.method, s.ddim.num_steps = "ddim", num_steps
  s.num_samples, s.batch_size = FLAGS.num_samples, min(200, FLAGS.num_samples)
  if weak:
    a = s.autoguidance
    (a.workdir, a.checkpoint_step), a.weight = weak, weight
  return build.build(config)


def _score(exp, params, folder, weak_params=None) -> dict:
  """{metric: [per sampling seed], "nfe": network evaluations per sample, "protocol"}."""
  row = {m: [] for m in METRICS}
  for k in range(FLAGS.sampling_seeds):
    x, nfe = evaluate.generate(exp, params, jax.random.PRNGKey(common.FASHION_MNIST_KEY + k),
                               FLAGS.num_samples, folder(k), "ddim", weak_params=weak_params)
    metrics = exp.data.sample_metrics(x)
    for m in METRICS:
      row[m].append(metrics[m])
  row["nfe"] = nfe * (2 if weak_params is not None else 1)        # main + weak
  row["protocol"] = metrics["fid_protocol"]
  return row


def score_rows(weak: list) -> tuple[dict, int]:
  """({(weak label, w) or ("alone", DDIM steps): row}, the main run's step); weak: the
  (workdir, step) of each weak model."""
  results = {}
  for n in UNGUIDED_STEPS:
    exp = _experiment(num_steps=n)
    params, step = weights.restore_params(exp, FLAGS.main)
    results["alone", n] = _score(exp, params, lambda k, n=n: (
        fashion_mnist_consistency.sample_folder(FLAGS.main, step, "ddim", n, k)))
  for workdir, weak_step in weak:
    label = weak_label(workdir, weak_step)
    for w in WEIGHTS:
      exp = _experiment((workdir, weak_step), w)
      name = f"{os.path.basename(os.path.normpath(workdir))}_step{weak_step}_w{w:g}"
      results[label, w] = _score(
          exp, params, lambda k, name=name: os.path.join(
              FLAGS.main, "autoguidance_page", f"step_{step}", f"{name}_seed{k}"),
          weights.weak_params(exp))
  return results, step


def _weak_labels(results: dict) -> list:
  return list(dict.fromkeys(k for k, _ in results if k != "alone"))


def conclusions(results: dict) -> list:
  """Per weak model: FID, precision and recall at each w against the main model alone at
  the same DDIM steps; whether the w of lowest mean FID bought it at a resolved loss of
  recall; and that row against the main model alone at equal network evaluations and at
  the most steps."""
  base, equal_cost, lines = results["alone", NUM_STEPS], results["alone", 2 * NUM_STEPS], []
  for label in _weak_labels(results):
    ws = [w for k, w in results if k == label]
    parts = [f"at w = {w:g} FID {common.compare(results[label, w]['fid'], base['fid'])}, "
             "precision "
             f"{common.compare(results[label, w]['precision'], base['precision'], '.3f')}, "
             f"recall {common.compare(results[label, w]['recall'], base['recall'], '.3f')}"
             for w in ws]
    best = min(ws, key=lambda w: np.mean(results[label, w]["fid"]))
    fid = common.compare(results[label, best]["fid"], base["fid"])
    recall = common.compare(results[label, best]["recall"], base["recall"], ".3f")
    if fid.startswith("lower"):
      verdict = (f"its lowest mean FID (w = {best:g}) is lower than the main model's alone, "
                 + ("with no resolved change of recall" if recall.startswith("not")
                    else f"and its recall is {recall.split(' (')[0]} the main model's"))
    else:
      verdict = ("no w lowers FID below the main model's alone by more than twice the SE "
                 f"(best mean at w = {best:g}: {fid} it)")
    longest = results["alone", UNGUIDED_STEPS[-1]]
    lines.append(
        f"Guided by {label}: " + "; ".join(parts) + f" the main model alone (DDIM-{NUM_STEPS}). "
        f"So {verdict}. At equal network evaluations (the main model alone, DDIM-"
        f"{2 * NUM_STEPS}) the w = {best:g} row's FID is "
        f"{common.compare(results[label, best]['fid'], equal_cost['fid'])} it; against "
        f"DDIM-{UNGUIDED_STEPS[-1]} unguided it is "
        f"{common.compare(results[label, best]['fid'], longest['fid'])} it.")
  return lines


def _figure(results: dict):
  fig, (ax_fid, ax_pr) = plt.subplots(1, 2, figsize=(9, 3.4))
  base = results["alone", NUM_STEPS]
  for i, label in enumerate(_weak_labels(results)):
    ws = [1.0] + [w for k, w in results if k == label]
    rows = [base] + [results[label, w] for w in ws[1:]]
    fid = [common.mean_se(r["fid"]) for r in rows]
    ax_fid.errorbar(ws, [m for m, _ in fid], yerr=[2 * s for _, s in fid], marker="o",
                    capsize=3, color=f"C{i}", label=f"weak: {label}")
    for metric, style in (("precision", "--"), ("recall", "-")):
      ax_pr.plot(ws, [np.mean(r[metric]) for r in rows], style, marker="o", color=f"C{i}",
                 label=f"{metric}, weak: {label}")
  m, se = common.mean_se(results["alone", 2 * NUM_STEPS]["fid"])
  ax_fid.axhspan(m - 2 * se, m + 2 * se, color="0.8",
                 label=f"main model alone, DDIM-{2 * NUM_STEPS} (equal NFE)")
  ax_fid.set(xlabel="guidance weight w (1: main model alone)", ylabel="FID (uint8, ± 2 SE)",
             title=f"Autoguidance of run B, DDIM-{NUM_STEPS}")
  ax_pr.set(xlabel="guidance weight w", ylabel="precision / recall")
  ax_fid.legend(fontsize=7)
  ax_pr.legend(fontsize=6)
  return fig


def main(_):
  common.require_feature_net("fashion_mnist_autoguidance")
  weak = [parse_weak(spec) for spec in FLAGS.weak]
  start = time.time()
  try:
    results, step = score_rows(weak)
  except errors.RunError as e:         # a missing run or checkpoint: one line
    raise app.UsageError(f"fashion_mnist_autoguidance: {e}") from None
  rows = []
  for (label, w), row in results.items():
    fid, kid = common.mean_se(row["fid"]), common.mean_se(row["kid"])
    guided = label != "alone"
    rows.append([label if guided else "none (main model alone)", f"{w:g}" if guided else "1",
                 NUM_STEPS if guided else w, row["nfe"], f"{fid[0]:.2f} ± {fid[1]:.2f}",
                 f"{kid[0]:.4f} ± {kid[1]:.4f}", f"{np.mean(row['precision']):.3f}",
                 f"{np.mean(row['recall']):.3f}"])
  table = common.markdown_table(["weak model", "w", "DDIM steps", "NFE", "FID ± SE",
                                 "KID ± SE", "precision", "recall"], rows)
  setup = (
      f"Main model: {FLAGS.main} at step {step} (EMA parameters); DDIM eta 1; NFE counts "
      f"the main and the weak network. FID protocol: {results['alone', NUM_STEPS]['protocol']}; "
      f"{FLAGS.sampling_seeds} sampling seeds x {FLAGS.num_samples} samples per row, mean ± SE "
      f"over the seeds. This invocation took {(time.time() - start) / 60:.0f} min of a 2-core "
      "CPU (rounds already in the sample folders are read, not drawn again).\n\n"
      + "\n".join(f"- {line}" for line in conclusions(results)))
  common.write_outputs("fashion_mnist_autoguidance",
                       "Autoguidance on Fashion-MNIST (issue 33)", setup,
                       f"{table}\n\n{NOTES}", _figure(results))


NOTES = (
    "What the numbers do not show. One main model and one of each weak model (one training "
    "seed each): the SEs are over sampling seeds only, so a gap says how these networks "
    "differ, not how the method does. One sampler and a grid of three w; the paper's "
    "networks (EDM2 on ImageNet) are far larger than this 0.28M-parameter one, and its "
    "weak models were chosen by a search this page does not repeat. The guided rows sample "
    f"with {NUM_STEPS} DDIM steps only: whether guidance helps as much at 100 steps, where the "
    "main model alone does better than at 20, is not measured. Run B's own checkpoint is "
    "the main model earlier in the same run (its initialization and first 800 steps), so "
    "its errors are aligned with the main model's by construction; the half-width network "
    "has its own weights but the same seed, so it saw the same first 800 batches. FID and "
    "KID use the Fashion-MNIST feature network, not Inception: no number here can be set "
    "beside a published one.")


if __name__ == "__main__":
  app.run(main)

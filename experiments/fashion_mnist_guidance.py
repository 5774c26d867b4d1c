r"""Guided class-conditional sampling on Fashion-MNIST, two ways, scored by the
Fashion-MNIST feature network:

* classifier-free guidance (Ho & Salimans, 2022) of the class-conditional CPU model
  (configs/fashion_mnist/vp_ddpm_cpu_conditional.py) at scales w: (1 + w) s(x, t, c) -
  w s(x, t, null); w = 0 is the conditional model itself;
* classifier guidance (Song et al., 2021, App. I; Dhariwal & Nichol, 2021) of the
  unconditional CPU model (configs/fashion_mnist/vp_ddpm_cpu.py) by its noise-conditional
  classifier (--mode train_classifier) at scales: s(x, t) + scale grad log p_t(c | x);
  scale 0 is the unconditional model (chance: 10%).

For each, how often the feature net classifies a sample as the class that was asked for
(its test accuracy on real images, 91.4%, is the reference), and FID / KID / precision /
recall of all classes together against the 10 000 test images (guidance is expected to
trade diversity, recall, for fidelity to the class).

  python -m experiments.fashion_mnist_guidance --cfg_workdir runs/fmnist_cond_cpu \
      --cg_workdir runs/fmnist_cpu

Samples are kept under <workdir>/guidance/ (resumable). Writes
docs/results/fashion_mnist_guidance.{md,png}.
"""
import os

from absl import app
from absl import flags
import jax
import matplotlib
import numpy as np

import evaluation
import feature_nets
from configs.fashion_mnist import vp_ddpm_cpu
from configs.fashion_mnist import vp_ddpm_cpu_conditional
from infra import weights
from infra import workdir as run_workdir
from run import build
from run import evaluate

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

flags.DEFINE_string("cfg_workdir", None, "The trained class-conditional run ('' to skip).")
flags.DEFINE_string("cg_workdir", None, "The trained unconditional run with its classifier "
                    "('' to skip).")
flags.DEFINE_list("cfg_scales", ["0", "1", "3"], "Classifier-free guidance scales w.")
flags.DEFINE_list("cg_scales", ["0", "1", "3"], "Classifier guidance scales.")
flags.DEFINE_integer("per_class", 50, "Samples per class and scale.")
flags.DEFINE_string("outdir", "docs/results", "Where the table and figure go.")
FLAGS = flags.FLAGS


def _config(kind: str, scale: float):
  """The sampling config of one guidance scale (the class comes per sample)."""
  if kind == "cfg":
    config = vp_ddpm_cpu_conditional.get_config()
    config.sampling.class_label, config.sampling.guidance_scale = 0, scale
  else:
    config = vp_ddpm_cpu.get_config()
    config.sampling.class_label = 0 if scale else -1
    config.sampling.classifier_scale = scale
  config.sampling.batch_size = 10 * FLAGS.per_class
  return config


def _draw(kind: str, workdir: str, scale: float):
  """(samples [10 per_class, 28, 28, 1] in [0, 1], asked labels, NFE, checkpoint step):
  one round of per_class samples of each class."""
  exp = build.build(_config(kind, scale))
  state, step = run_workdir.load_state(exp, workdir)
  clf = weights.classifier_params(exp, workdir) if kind == "cg" and scale else None
  asked = np.repeat(np.arange(10, dtype=np.int32), FLAGS.per_class)
  x, nfe = evaluate.generate(exp, state.ema_params, jax.random.PRNGKey(0), len(asked),
                             os.path.join(workdir, "guidance", f"{kind}{scale:g}"),
                             classifier_params=clf, labels=asked)
  return np.clip(np.asarray(exp.data.unscale(x)), 0, 1), asked, nfe, step


def main(_):
  net = feature_nets.load("fashion_mnist_cnn", vp_ddpm_cpu.get_config().data.data_dir)
  exp = build.build(vp_ddpm_cpu.get_config())
  real, _ = net(np.asarray(exp.data.unscale(exp.data.held_out)))
  rows, grids = [], []
  runs = [("cfg", FLAGS.cfg_workdir, FLAGS.cfg_scales), ("cg", FLAGS.cg_workdir, FLAGS.cg_scales)]
  for kind, workdir, scales in runs:
    for scale in map(float, scales if workdir else []):
      images, asked, nfe, step = _draw(kind, workdir, scale)
      features, logits = net(evaluation.protocol_images(images, "uint8"))
      hits = np.argmax(logits, 1) == asked
      accuracy = float(np.mean(hits))
      quality = evaluation.quality_metrics(real, features, logits)
      rows.append((kind, scale, step, nfe, accuracy,
                   float(np.std(hits, ddof=1) / np.sqrt(len(hits))), quality))
      grids.append(np.concatenate([np.concatenate(list(images[asked == c][:8]), 1)
                                   for c in range(10)], 0))
      print(rows[-1][:6], {k: round(v, 3) for k, v in quality.items()}, flush=True)
  names = {"cfg": "classifier-free, w", "cg": "classifier, scale"}
  lines = ["| guidance | checkpoint step | NFE per sample | class accuracy (feature net) | FID | "
           "KID | precision | recall |", "|---|---|---|---|---|---|---|---|"]
  for kind, scale, step, nfe, acc, se, q in rows:
    lines.append(f"| {names[kind]} = {scale:g} | {step} | {nfe} | {acc:.3f} ± {se:.3f} | "
                 f"{q['fid']:.2f} | {q['kid']:.2f} ± {q['kid_std']:.2f} | "
                 f"{q['precision']:.3f} | {q['recall']:.3f} |")
  table = (f"{FLAGS.per_class} samples per class and row (DDIM eta 1, 100 steps; one batch, "
           "key 0); FID / KID / PR of all 10 classes together, samples rounded to uint8 "
           "(evaluation.PROTOCOLS), against the 10 000 test images.\n\n" + "\n".join(lines))
  print(table)
  os.makedirs(FLAGS.outdir, exist_ok=True)
  with open(os.path.join(FLAGS.outdir, "fashion_mnist_guidance.md"), "w") as f:
    f.write(table + "\n")
  fig, axes = plt.subplots(1, len(grids), figsize=(3.2 * len(grids), 4.4))
  for ax, grid, (kind, scale, *_) in zip(np.atleast_1d(axes), grids, rows):
    ax.imshow(grid[..., 0], cmap="gray", vmin=0, vmax=1)
    ax.set_title(f"{names[kind]} = {scale:g}", fontsize=9)
    ax.axis("off")
  fig.savefig(os.path.join(FLAGS.outdir, "fashion_mnist_guidance.png"), dpi=110,
              bbox_inches="tight")


if __name__ == "__main__":
  flags.mark_flags_as_required(["cfg_workdir", "cg_workdir"])
  app.run(main)

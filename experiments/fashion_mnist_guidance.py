r"""Classifier-free guidance on Fashion-MNIST: the class-conditional CPU model
(configs/fashion_mnist/vp_ddpm_cpu_conditional.py) sampled at several guidance scales w,
scored by the Fashion-MNIST feature network: how often it classifies a sample as the
class that was asked for (its test accuracy on real images, 91.4%, is the reference),
and FID / KID / precision / recall of all classes together against the test set (the
usual trade-off: guidance raises accuracy and precision, lowers recall).

  python -m experiments.fashion_mnist_guidance --workdir runs/fmnist_cond_cpu

Samples are kept under <workdir>/guidance/ (resumable). Writes
docs/results/fashion_mnist_guidance.{md,png}.
"""
import os

from absl import app
from absl import flags
import jax
import matplotlib
import numpy as np

import feature_nets
from run import build
from run import checkpoints
from run import evaluate
from configs.fashion_mnist import vp_ddpm_cpu_conditional

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

flags.DEFINE_string("workdir", None, "The trained conditional run.")
flags.DEFINE_list("scales", ["0", "1", "3"], "Guidance scales w.")
flags.DEFINE_integer("per_class", 50, "Samples per class and scale.")
flags.DEFINE_string("outdir", "docs/results", "Where the table and figure go.")
FLAGS = flags.FLAGS


def main(_):
  rows, grids = [], []
  net = None
  for w in map(float, FLAGS.scales):
    samples, asked = [], []
    for label in range(10):
      config = vp_ddpm_cpu_conditional.get_config()
      config.sampling.class_label, config.sampling.guidance_scale = label, w
      config.sampling.batch_size = FLAGS.per_class
      exp = build.build(config)
      if net is None:
        mngr = checkpoints.manager(FLAGS.workdir, config.training)
        state, step = checkpoints.restore(mngr, exp.abstract_state())
        net = feature_nets.load("fashion_mnist_cnn", config.data.data_dir)
        real, _ = net(np.asarray(exp.task.unscale(exp.task.held_out)))
      x, nfe = evaluate.generate(exp, state.ema_params, jax.random.PRNGKey(label), FLAGS.per_class,
                                 os.path.join(FLAGS.workdir, "guidance", f"w{w:g}", f"class{label}"))
      samples.append(np.clip(np.asarray(exp.task.unscale(x)), 0, 1))
      asked.append(np.full(len(x), label))
    images, asked = np.concatenate(samples), np.concatenate(asked)
    features, logits = net(images)
    accuracy = float(np.mean(np.argmax(logits, 1) == asked))
    quality = feature_nets.quality_metrics(real, features, logits)
    rows.append((w, nfe, accuracy, np.sqrt(accuracy * (1 - accuracy) / len(asked)), quality))
    grids.append(np.concatenate([np.concatenate(list(s[:8]), 1) for s in samples], 0))
  lines = ["| guidance w | NFE (x 2 networks) | class accuracy (feature net) | FID | KID | "
           "precision | recall |", "|---|---|---|---|---|---|---|"]
  for w, nfe, acc, se, q in rows:
    lines.append(f"| {w:g} | {nfe} | {acc:.3f} ± {se:.3f} | {q['fid']:.2f} | "
                 f"{q['kid']:.2f} ± {q['kid_std']:.2f} | {q['precision']:.3f} | {q['recall']:.3f} |")
  table = "\n".join(lines)
  print(f"checkpoint step {step}, {FLAGS.per_class} samples per class\n" + table)
  os.makedirs(FLAGS.outdir, exist_ok=True)
  with open(os.path.join(FLAGS.outdir, "fashion_mnist_guidance.md"), "w") as f:
    f.write(table + "\n")
  fig, axes = plt.subplots(1, len(grids), figsize=(4 * len(grids), 5))
  for ax, grid, (w, *_) in zip(np.atleast_1d(axes), grids, rows):
    ax.imshow(grid[..., 0], cmap="gray", vmin=0, vmax=1)
    ax.set_title(f"w = {w:g} (one row per class)")
    ax.axis("off")
  fig.savefig(os.path.join(FLAGS.outdir, "fashion_mnist_guidance.png"), dpi=120,
              bbox_inches="tight")


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  app.run(main)

r"""Does the Fashion-MNIST feature network measure sample quality? FID, KID, IS and
precision / recall of 10 000 training images, and of the 10 000 test images blurred or
noised, each against the test images. Expected: near-zero FID for real images, growing
monotonically with the corruption; precision falls with noise (off the data manifold),
recall with blur (detail lost).

  make feature-net && python -m experiments.feature_net_sanity     # ~3 min

Writes docs/results/feature_net_sanity.md.
"""
import os

from absl import app
from absl import flags
import numpy as np
import scipy.ndimage

import datasets
import evaluation
import feature_nets

flags.DEFINE_string("data_dir", "data/tfds", "Where Fashion-MNIST and its feature net are.")
flags.DEFINE_string("outdir", "docs/results", "Where the table goes.")
FLAGS = flags.FLAGS


def main(_):
  net = feature_nets.load("fashion_mnist_cnn", FLAGS.data_dir, batch_size=500)
  train, _ = datasets.load_labelled("fashion_mnist", "train", 28, FLAGS.data_dir)
  test, labels = datasets.load_labelled("fashion_mnist", "test", 28, FLAGS.data_dir)
  real, logits = net(test)
  rng = np.random.default_rng(0)
  sets = [("test images themselves", test), ("10 000 training images", train[:10_000])]
  sets += [(f"test, Gaussian blur {s} px", scipy.ndimage.gaussian_filter(test, (0, s, s, 0)))
           for s in (0.5, 1.0, 2.0)]
  sets += [(f"test + noise, std {s}", np.clip(test + s * rng.normal(size=test.shape), 0, 1))
           for s in (0.05, 0.1, 0.2, 0.4)]
  lines = ["| images (10 000) vs the 10 000 test images | FID | KID | IS | precision | recall |",
           "|---|---|---|---|---|---|"]
  for name, images in sets:
    m = evaluation.quality_metrics(real, *net(images))
    lines.append(f"| {name} | {m['fid']:.2f} | {m['kid']:.2f} ± {m['kid_std']:.2f} | "
                 f"{m['is']:.2f} ± {m['is_std']:.2f} | {m['precision']:.3f} | {m['recall']:.3f} |")
  # The floor at the sample sizes of the results tables: real images, n = 500, 5 draws.
  floor = {k: [] for k in ("fid", "kid", "precision", "recall")}
  for _ in range(5):
    rows = rng.choice(len(train), 500, replace=False)
    m = evaluation.quality_metrics(real, *net(train[rows]))
    for k in floor:
      floor[k].append(m[k])
  spread = lambda k: f"{np.mean(floor[k]):.3g} ± {np.std(floor[k], ddof=1):.2g}"
  lines.append(f"| 500 training images (5 draws: mean ± sd) | {spread('fid')} | {spread('kid')} "
               f"| | {spread('precision')} | {spread('recall')} |")
  accuracy = float(np.mean(np.argmax(logits, 1) == labels))
  text = (f"Feature network `fashion_mnist_cnn`: test accuracy {accuracy:.4f}.\n\n"
          + "\n".join(lines) + "\n")
  print(text)
  os.makedirs(FLAGS.outdir, exist_ok=True)
  with open(os.path.join(FLAGS.outdir, "feature_net_sanity.md"), "w") as f:
    f.write(text)


if __name__ == "__main__":
  app.run(main)

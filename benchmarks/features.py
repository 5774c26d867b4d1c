r"""Feature extraction for FID / KID: images/s of the Flax Inception-v3 (28 x 28 inputs
resized to 299 x 299, as for Fashion-MNIST samples) against pytorch-fid's InceptionV3 on
the same CPU, alternating the two, and of the Fashion-MNIST SmallCNN; plus a float32
matmul peak measured in the same run, and FID / KID / precision-recall wall time on
feature sets of the sizes an evaluation uses.

  python -m benchmarks.features

Both Inceptions carry the same random weights (the published file is not needed for
timing). torch is a test / benchmark dependency: pip install -r requirements-test.txt
"""
import statistics
import time

from absl import app
from absl import flags
import jax
import numpy as np

import evaluation
import feature_nets
from benchmarks import unet
from models import classifier
from models import inception
from tools import torch_peers

flags.DEFINE_integer("inception_batch", 50, "Images per Inception call.")
flags.DEFINE_integer("inception_pairs", 5, "Timed (flax, torch) pairs; the median is reported.")
FLAGS = flags.FLAGS

INCEPTION_GFLOP = 2 * 5.713    # multiply-adds of Inception-v3 at 299 px (Szegedy et al.), x2


def _wall(fn):
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def main(_):
  import torch  # pylint: disable=g-import-not-at-top
  peak = unet.matmul_peak_gflops()
  reference, network = torch_peers.random_pytorch_fid_inception()
  torch.set_grad_enabled(False)
  params = feature_nets.inception_params_from_state_dict(
      {k: v.numpy() for k, v in network.state_dict().items()})
  flax_fn = jax.jit(lambda p, x: inception.InceptionV3().apply({"params": p}, x))
  images = np.random.default_rng(0).uniform(size=(FLAGS.inception_batch, 28, 28, 1)).astype(np.float32)
  torch_in = torch.from_numpy(np.repeat(images, 3, -1).transpose(0, 3, 1, 2))
  start = time.perf_counter()
  jax.block_until_ready(flax_fn(params, images))
  compile_s = time.perf_counter() - start
  reference(torch_in)
  flax_s, torch_s = [], []
  for _ in range(FLAGS.inception_pairs):
    flax_s.append(_wall(lambda: jax.block_until_ready(flax_fn(params, images))))
    torch_s.append(_wall(lambda: reference(torch_in)))
  ratio = statistics.median(t / f for f, t in zip(flax_s, torch_s))
  flax_rate, torch_rate = FLAGS.inception_batch / statistics.median(flax_s), FLAGS.inception_batch / statistics.median(torch_s)
  print(f"matmul peak (float32, 2048^2): {peak:.0f} GFLOP/s")
  print("| network | batch | flax img/s (min-max) | flax GFLOP/s | flax / peak | compile s "
        "| torch img/s | flax / torch (median of pairs) |")
  print("|---|---|---|---|---|---|---|---|")
  spread = f"{FLAGS.inception_batch / max(flax_s):.1f}-{FLAGS.inception_batch / min(flax_s):.1f}"
  print(f"| Inception-v3, 28 px -> 299 px | {FLAGS.inception_batch} | {flax_rate:.1f} ({spread}) | "
        f"{flax_rate * INCEPTION_GFLOP:.0f} | {flax_rate * INCEPTION_GFLOP / peak:.2f} | "
        f"{compile_s:.0f} | {torch_rate:.1f} | {ratio:.2f} |")

  cnn = classifier.SmallCNN()
  cnn_params = cnn.init(jax.random.PRNGKey(0), images[:1])["params"]
  net = feature_nets.FeatureNet("fashion_mnist_cnn",
                                jax.jit(lambda p, x: cnn.apply({"params": p}, x)), cnn_params, 500)
  many = np.random.default_rng(1).uniform(size=(10_000, 28, 28, 1)).astype(np.float32)
  net(many[:500])
  times = [_wall(lambda: net(many)) for _ in range(3)]
  print(f"| SmallCNN (Fashion-MNIST) | 500 | {10_000 / statistics.median(times):.0f} "
        f"({10_000 / max(times):.0f}-{10_000 / min(times):.0f}) | | | | | |")

  rng = np.random.default_rng(2)
  for dim, n in ((128, 10_000), (2048, 10_000)):
    real, fake = rng.normal(size=(n, dim)), rng.normal(size=(n, dim))
    logits = rng.normal(size=(n, 10))
    seconds = _wall(lambda: evaluation.quality_metrics(real, fake, logits))
    print(f"quality_metrics (FID + KID 100 x 1000 + IS + PR k=3), {n} vs {n} features of "
          f"dim {dim}: {seconds:.1f} s")


if __name__ == "__main__":
  app.run(main)

"""Data: 2-D toy distributions (samplers, with exact densities where known), and image
datasets (TFDS pipelines, TFRecord folders, the offline Fashion-MNIST preparation).

  python -m datasets prepare_fashion_mnist --data_dir=DIR   # from dataset-fashion-mnist

Each toy distribution is a `ToyDistribution`: `sample(key, n) -> [n, 2]`, and
`log_prob(x [B, 2]) -> [B]` where the density is known in closed form (else None).
"""
import dataclasses
import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

import densities
from infra import files as infra_files


@dataclasses.dataclass(frozen=True)
class ToyDistribution:
  sample: Callable[[jax.Array, int], jax.Array]
  log_prob: Optional[Callable[[jax.Array], jax.Array]] = None
  mixture: Optional[densities.GaussianMixture] = None   # exact scores under any SDE


def gaussian_mixture() -> densities.GaussianMixture:
  """Three well-separated components with unequal weights (0.2, 0.3, 0.5)."""
  return densities.GaussianMixture(
      means=jnp.array([[-2.0, -1.0], [2.0, -1.0], [0.0, 2.0]]),
      stds=jnp.array([0.4, 0.5, 0.3]),
      weights=jnp.array([0.2, 0.3, 0.5]))


def _checkerboard_sample(key, n):
  """Uniform on the 8 dark squares of a 4x4 board on [-2, 2]^2 (area 8)."""
  k_cell, k_pos = jax.random.split(key)
  cell = jax.random.randint(k_cell, (n,), 0, 8)
  row = cell // 2
  col = 2 * (cell % 2) + (row % 2)
  corner = jnp.stack([col, row], axis=-1).astype(jnp.float32) - 2.0
  return corner + jax.random.uniform(k_pos, (n, 2))


def _checkerboard_log_prob(x):
  inside = jnp.all(jnp.abs(x) < 2.0, axis=-1)
  cells = jnp.floor(x + 2.0).astype(jnp.int32)
  dark = (cells[:, 0] + cells[:, 1]) % 2 == 0
  return jnp.where(inside & dark, -math.log(8.0), -jnp.inf)


def _rings_sample(key, n):
  """Two concentric rings (radii 1 and 2, radial noise 0.08), equal mass."""
  k_ring, k_angle, k_noise = jax.random.split(key, 3)
  radius = 1.0 + jax.random.bernoulli(k_ring, 0.5, (n,)).astype(jnp.float32)
  angle = jax.random.uniform(k_angle, (n,), maxval=2 * math.pi)
  radius = radius + 0.08 * jax.random.normal(k_noise, (n,))
  return jnp.stack([radius * jnp.cos(angle), radius * jnp.sin(angle)], axis=-1)


def _swissroll_sample(key, n):
  """2-D swiss roll (the sklearn parameterization, scaled to about [-2.5, 2.5]^2)."""
  k_angle, k_noise = jax.random.split(key)
  angle = 1.5 * math.pi * (1 + 2 * jax.random.uniform(k_angle, (n,)))
  points = jnp.stack([angle * jnp.cos(angle), angle * jnp.sin(angle)], axis=-1) / 5.0
  return points + 0.05 * jax.random.normal(k_noise, (n, 2))


def _moons_sample(key, n):
  """Two interleaving half circles (as sklearn's make_moons), centred, noise 0.05."""
  k_moon, k_angle, k_noise = jax.random.split(key, 3)
  upper = jax.random.bernoulli(k_moon, 0.5, (n,))
  angle = jax.random.uniform(k_angle, (n,), maxval=math.pi)
  x = jnp.where(upper, jnp.cos(angle), 1.0 - jnp.cos(angle)) - 0.5
  y = jnp.where(upper, jnp.sin(angle), 0.5 - jnp.sin(angle)) - 0.25
  return 1.5 * jnp.stack([x, y], axis=-1) + 0.05 * jax.random.normal(k_noise, (n, 2))


def _mixture_distribution() -> ToyDistribution:
  gmm = gaussian_mixture()
  return ToyDistribution(gmm.sample, gmm.log_prob, gmm)


TOY_DISTRIBUTIONS = {
    "gmm": _mixture_distribution,
    "checkerboard": lambda: ToyDistribution(_checkerboard_sample, _checkerboard_log_prob),
    "rings": lambda: ToyDistribution(_rings_sample),
    "swissroll": lambda: ToyDistribution(_swissroll_sample),
    "moons": lambda: ToyDistribution(_moons_sample),
}


def get_toy_distribution(name: str) -> ToyDistribution:
  if name not in TOY_DISTRIBUTIONS:
    raise ValueError(f"unknown toy dataset {name!r}; valid choices: {sorted(TOY_DISTRIBUTIONS)}")
  return TOY_DISTRIBUTIONS[name]()


# --- Images: TFDS pipelines and TFRecord folders. ---------------------------------------
#
# Images enter the model as float32 [B, H, W, C] in [0, 1] (or [-1, 1] when `centered`);
# `get_data_scaler` / `get_data_inverse_scaler` map between the two. TensorFlow is imported
# inside the functions below, so the 2-D experiments never pay for it.

FASHION_MNIST_DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"

# name -> (TFDS name, train split, eval split); "lsun/<category>" and "tfrecords:<dir>"
# are handled by pattern.
TFDS_DATASETS = {
    "cifar10": ("cifar10", "train", "test"),
    "svhn": ("svhn_cropped", "train", "test"),
    "celeba": ("celeb_a", "train", "validation"),
    "mnist": ("mnist", "train", "test"),
    "fashion_mnist": ("fashion_mnist", "train", "test"),
}
PREPARE_HINTS = {
    "fashion_mnist": "apt-get install -y dataset-fashion-mnist && python -m datasets "
                     "prepare_fashion_mnist --data_dir={data_dir}",
}


def get_data_scaler(centered: bool) -> Callable[[jax.Array], jax.Array]:
  """[0, 1] -> the model's data range ([-1, 1] if centered)."""
  return (lambda x: 2.0 * x - 1.0) if centered else (lambda x: x)


def get_data_inverse_scaler(centered: bool) -> Callable[[jax.Array], jax.Array]:
  """The model's data range -> [0, 1]; the inverse of `get_data_scaler`."""
  return (lambda x: (x + 1.0) / 2.0) if centered else (lambda x: x)


def prepare_fashion_mnist(data_dir: str, source_dir: str = FASHION_MNIST_DEBIAN_DIR) -> str:
  """Prepares TFDS's `fashion_mnist` in `data_dir` from the real idx files of the Debian
  package `dataset-fashion-mnist` (no network); afterwards the stock
  `tfds.load("fashion_mnist", data_dir=data_dir)` works. Returns the dataset directory.
  Takes ~10 s. The files' gzip headers differ from upstream, so the stock builder's
  checksums would fail; this builder reads the decompressed files instead."""
  import gzip  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.image_classification import mnist  # pylint: disable=g-import-not-at-top

  names = {"train_data": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
           "test_data": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
  missing = [n for n in names.values() if not os.path.exists(os.path.join(source_dir, n + ".gz"))]
  if missing:
    raise FileNotFoundError(f"Fashion-MNIST idx files {missing} not found in {source_dir}; "
                            "install them with: apt-get install -y dataset-fashion-mnist")
  raw_dir = os.path.join(data_dir, "downloads", "fashion_mnist_debian")
  os.makedirs(raw_dir, exist_ok=True)
  files = {}
  for key, name in names.items():
    files[key] = os.path.join(raw_dir, name)
    if not os.path.exists(files[key]):
      with gzip.open(os.path.join(source_dir, name + ".gz"), "rb") as src:
        infra_files.write_atomically(files[key], src.read())

  class LocalFashionMNIST(mnist.FashionMNIST, skip_registration=True):
    name = "fashion_mnist"

    def _split_generators(self, dl_manager):
      del dl_manager
      return [tfds.core.SplitGenerator(name=split, gen_kwargs=dict(
                  num_examples=count, data_path=files[f"{split}_data"],
                  label_path=files[f"{split}_labels"]))
              for split, count in (("train", 60_000), ("test", 10_000))]

  builder = LocalFashionMNIST(data_dir=data_dir)
  builder.download_and_prepare()
  return builder.data_dir


def _check_prepared(tfds_name: str, data_dir: Optional[str], dataset: str):
  """Fails at once (instead of TFDS's ~200 s download attempt) if not prepared."""
  import os  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder(tfds_name, data_dir=data_dir)
  if not os.path.exists(os.path.join(builder.data_dir, "dataset_info.json")):
    hint = PREPARE_HINTS.get(dataset, "prepare it with: tfds build {name} --data_dir={data_dir}")
    raise FileNotFoundError(
        f"dataset {dataset!r} is not prepared in {builder.data_dir}; "
        + hint.format(name=tfds_name, data_dir=data_dir or "~/tensorflow_datasets"))


def _center_crop(image, size: int):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  h, w = tf.shape(image)[0], tf.shape(image)[1]
  return tf.image.crop_to_bounding_box(image, (h - size) // 2, (w - size) // 2, size, size)


def _resize_small(image, size: int):
  """Resizes so the shorter side is `size` (antialiased)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  h, w = tf.cast(tf.shape(image)[0], tf.float32), tf.cast(tf.shape(image)[1], tf.float32)
  ratio = size / tf.minimum(h, w)
  new = (tf.cast(tf.round(h * ratio), tf.int32), tf.cast(tf.round(w * ratio), tf.int32))
  return tf.image.resize(image, new, antialias=True)


def _source(dataset: str, split: str, data_dir: Optional[str], image_size: int):
  """(tf.data.Dataset of (uint8 image [H, W, C], int32 label), preprocess: float32
  image -> image_size x image_size, number of examples or None if unknown)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  def resize(image):
    if image.shape[0] == image_size and image.shape[1] == image_size:
      return image
    return tf.image.resize(image, (image_size, image_size), antialias=True)

  if dataset.startswith("tfrecords:"):
    # The progressive-GAN format of FFHQ / CelebA-HQ: {'shape': int64 [3] (C, H, W),
    # 'data': raw uint8 bytes}; one folder of *.tfrecords files.
    files = sorted(tf.io.gfile.glob(dataset[len("tfrecords:"):].rstrip("/") + "/*.tfrecords"))
    if not files:
      raise FileNotFoundError(f"no *.tfrecords files in {dataset[len('tfrecords:'):]!r}")
    def parse(record):
      ex = tf.io.parse_single_example(record, {"shape": tf.io.FixedLenFeature([3], tf.int64),
                                               "data": tf.io.FixedLenFeature([], tf.string)})
      image = tf.reshape(tf.io.decode_raw(ex["data"], tf.uint8), ex["shape"])
      return tf.transpose(image, (1, 2, 0)), tf.constant(0, tf.int32)
    ds = tf.data.TFRecordDataset(files).map(parse)
    return ds, resize, None

  if dataset.startswith("lsun/"):
    tfds_name = dataset
    preprocess = lambda im: _center_crop(_resize_small(im, image_size), image_size)
  elif dataset in TFDS_DATASETS:
    tfds_name = TFDS_DATASETS[dataset][0]
    # CelebA as published: the central 140 x 140 crop, resized.
    preprocess = (lambda im: resize(_center_crop(im, 140))) if dataset == "celeba" else resize
  else:
    raise ValueError(f"unknown dataset {dataset!r}; valid choices: {sorted(TFDS_DATASETS)} "
                     "or 'lsun/<category>' or 'tfrecords:<folder>'")
  _check_prepared(tfds_name, data_dir, dataset)
  builder = tfds.builder(tfds_name, data_dir=data_dir)
  ds = builder.as_dataset(split=split, shuffle_files=False)
  label = lambda ex: tf.cast(ex["label"], tf.int32) if "label" in ex else tf.constant(0, tf.int32)
  ds = ds.map(lambda ex: (ex["image"], label(ex)))
  splits = builder.info.splits
  return ds, preprocess, splits[split].num_examples if split in splits else None


def get_image_dataset(dataset: str, split: str, batch_size: int, image_size: int, *,
                      data_dir: Optional[str] = None, seed: int = 0, train: bool = True,
                      random_flip: bool = True, uniform_dequantization: bool = False,
                      shard: tuple[int, int] = (0, 1), skip_batches: int = 0,
                      shuffle_buffer: int = 10_000):
  """An iterator of numpy batches {"image": float32 [batch_size, S, S, C] in [0, 1],
  "label": int32 [batch_size]} of one process's share of `split`.

  Process `shard = (index, count)` reads every count-th example (a disjoint split).
  With `train`, the stream repeats forever, reshuffled each epoch, with random
  horizontal flips and (optionally) uniform dequantization (x * 255 + u) / 256,
  u ~ U[0, 1); every random choice is a function of `seed` and the example's position
  in the stream, so the stream is deterministic and `skip_batches` resumes it exactly.
  Without `train`: one pass in file order, no augmentation, the last batch kept short.
  Names: `datasets.TFDS_DATASETS`, "lsun/<category>", or "tfrecords:<folder>".
  data_dir None or "": TFDS's default directory (TFDS itself reads "" as the working one).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  del tfds
  tf.config.set_visible_devices([], "GPU")
  ds, preprocess, num_examples = _source(dataset, split, data_dir or None, image_size)
  ds = ds.shard(shard[1], shard[0])
  options = tf.data.Options()
  options.deterministic = True
  options.threading.private_threadpool_size = 2
  ds = ds.with_options(options)

  def finish(image, label, rng):
    image = preprocess(tf.cast(image, tf.float32))
    if rng is not None and random_flip:
      flip = tf.random.stateless_uniform([], seed=rng[0]) < 0.5
      image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
    if rng is not None and uniform_dequantization:
      image = (image + tf.random.stateless_uniform(tf.shape(image), seed=rng[1])) / 256.0
    else:
      image = image / 255.0
    return {"image": image, "label": label}

  if train:
    if num_examples is not None and num_examples <= 300_000:
      ds = ds.cache()          # decoded uint8 images in memory (CIFAR-10: 150 MB)
    ds = ds.repeat().shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.enumerate().skip(skip_batches * batch_size)
    def augment(index, example):
      rng = tf.random.experimental.stateless_split(tf.stack([tf.cast(seed, tf.int64), index]), 2)
      return finish(*example, rng)
    ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size, drop_remainder=True)
  else:
    ds = ds.map(lambda image, label: finish(image, label, None),
                num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
  return ds.prefetch(2).as_numpy_iterator()


def load_labelled(dataset: str, split: str, image_size: int, data_dir: Optional[str] = None):
  """A whole split in memory: (images float32 [N, S, S, C] in [0, 1], labels int32 [N]),
  in file order."""
  batches = list(get_image_dataset(dataset, split, 1000, image_size, data_dir=data_dir,
                                   train=False))
  return (np.concatenate([b["image"] for b in batches]),
          np.concatenate([b["label"] for b in batches]))


def _main(argv):
  """python -m datasets prepare_fashion_mnist --data_dir=DIR"""
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(prog="python -m datasets")
  parser.add_argument("command", choices=["prepare_fashion_mnist"])
  parser.add_argument("--data_dir", required=True)
  args = parser.parse_args(argv)
  print(f"prepared {prepare_fashion_mnist(args.data_dir)}")


if __name__ == "__main__":
  import sys  # pylint: disable=g-import-not-at-top
  _main(sys.argv[1:])

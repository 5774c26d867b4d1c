"""Image pipelines: on TFDS mock data, and on the real Fashion-MNIST prepared offline from
the Debian package (CI installs `dataset-fashion-mnist`)."""
import os
import time

import numpy as np
import pytest

import datasets


@pytest.fixture
def mock_cifar10(monkeypatch):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(datasets, "_check_prepared", lambda *args: None)
  with tfds.testing.mock_data(num_examples=48):
    yield


def _first(iterator, n):
  return [next(iterator) for _ in range(n)]


def test_mock_pipeline_shapes_range_and_determinism(mock_cifar10):
  kwargs = dict(batch_size=8, image_size=32, seed=1, uniform_dequantization=True,
                shuffle_buffer=64)
  a = _first(datasets.get_image_dataset("cifar10", "train", **kwargs), 3)
  b = _first(datasets.get_image_dataset("cifar10", "train", **kwargs), 3)
  other = _first(datasets.get_image_dataset("cifar10", "train", **{**kwargs, "seed": 2}), 3)
  resumed = _first(datasets.get_image_dataset("cifar10", "train", skip_batches=2, **kwargs), 1)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["image"], y["image"])
  assert not np.array_equal(a[0]["image"], other[0]["image"])
  np.testing.assert_array_equal(resumed[0]["image"], a[2]["image"])
  image = a[0]["image"]
  assert image.shape == (8, 32, 32, 3) and image.dtype == np.float32
  assert image.min() >= 0.0 and image.max() < 1.0
  # Dequantized: the fractional parts of 256 x are the uniform u: mean 1/2 within 4 SE.
  frac = ((image * 256.0) % 1.0).ravel()
  assert abs(frac.mean() - 0.5) < 4 * np.sqrt(1 / 12 / frac.size)
  # Resizing: a 16 px pipeline of the same data.
  small = next(datasets.get_image_dataset("cifar10", "train", 8, 16, seed=1, shuffle_buffer=64))
  assert small["image"].shape == (8, 16, 16, 3)


def test_mock_pipeline_flips_and_shards(mock_cifar10):
  plain = datasets.get_image_dataset("cifar10", "test", 48, 32, train=False)
  images = next(plain)["image"]
  assert images.shape == (48, 32, 32, 3)
  halves = [np.concatenate([b["image"] for b in datasets.get_image_dataset(
      "cifar10", "test", 48, 32, train=False, shard=(i, 2))]) for i in range(2)]
  assert len(halves[0]) == len(halves[1]) == 24
  np.testing.assert_array_equal(np.concatenate([halves[0], halves[1]])[np.argsort(
      np.r_[0:48:2, 1:48:2])], images)
  # Training with flips: every image of an epoch is the test image or its mirror.
  flipped = np.concatenate([b["image"] for b in _first(datasets.get_image_dataset(
      "cifar10", "train", 48, 32, seed=0, shuffle_buffer=64), 4)])
  train_images = np.concatenate([b["image"] for b in datasets.get_image_dataset(
      "cifar10", "train", 48, 32, train=False)])
  originals = {x.tobytes() for x in train_images}
  mirrors = {x[:, ::-1].tobytes() for x in train_images}
  kinds = [(x.tobytes() in originals, x.tobytes() in mirrors) for x in flipped]
  assert all(o or m for o, m in kinds)
  n_mirrored = sum(m and not o for o, m in kinds)
  # Binomial(192, 1/2): 96 +- 6.9; 4 standard errors.
  assert abs(n_mirrored - 96) < 4 * np.sqrt(192 / 4)


def test_unprepared_dataset_fails_at_once_with_the_fix(tmp_path):
  start = time.time()
  with pytest.raises(FileNotFoundError, match="not prepared .*prepare_fashion_mnist"):
    datasets.get_image_dataset("fashion_mnist", "train", 8, 28, data_dir=str(tmp_path))
  with pytest.raises(FileNotFoundError, match="'svhn' is not prepared .*tfds build svhn_cropped"):
    datasets.get_image_dataset("svhn", "train", 8, 32, data_dir=str(tmp_path))
  with pytest.raises(ValueError, match="unknown dataset 'imagenet'.*valid choices"):
    datasets.get_image_dataset("imagenet", "train", 8, 32, data_dir=str(tmp_path))
  assert time.time() - start < 30


def test_centering_scaler_and_its_inverse():
  x = np.linspace(0.0, 1.0, 11)
  centered = datasets.get_data_scaler(True)(x)
  np.testing.assert_allclose([centered.min(), centered.max()], [-1.0, 1.0])
  np.testing.assert_allclose(datasets.get_data_inverse_scaler(True)(centered), x)
  np.testing.assert_array_equal(datasets.get_data_scaler(False)(x), x)


@pytest.mark.xdist_group("fashion_mnist")
def test_real_fashion_mnist_prepared_offline(fashion_mnist_dir):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  # The stock loader now works with no network.
  stock = tfds.load("fashion_mnist", split="test", data_dir=fashion_mnist_dir)
  assert stock.cardinality().numpy() == 10_000
  counts = {}
  for split, total in (("train", 60_000), ("test", 10_000)):
    labels, images = [], []
    for batch in datasets.get_image_dataset("fashion_mnist", split, 10_000, 28,
                                            data_dir=fashion_mnist_dir, train=False):
      labels.append(batch["label"])
      images.append(batch["image"][:100])
    labels = np.concatenate(labels)
    counts[split] = np.bincount(labels, minlength=10)
    assert len(labels) == total
    images = np.concatenate(images)
    assert images.shape[1:] == (28, 28, 1)
    assert images.min() == 0.0 and images.max() == 1.0   # 8-bit images use the full range
    # Real data, not noise: pixel means of Fashion-MNIST are ~0.29 (published 72.9/255).
    assert 0.25 < images.mean() < 0.33
  np.testing.assert_array_equal(counts["train"], np.full(10, 6000))
  np.testing.assert_array_equal(counts["test"], np.full(10, 1000))


@pytest.mark.xdist_group("fashion_mnist")
def test_real_fashion_mnist_training_stream_is_deterministic(fashion_mnist_dir):
  make = lambda **kw: datasets.get_image_dataset("fashion_mnist", "train", 64, 28,
                                                 data_dir=fashion_mnist_dir, seed=5,
                                                 random_flip=False, **kw)
  a = _first(make(), 3)
  resumed = next(make(skip_batches=2))
  np.testing.assert_array_equal(resumed["image"], a[2]["image"])
  np.testing.assert_array_equal(resumed["label"], a[2]["label"])
  labels = np.concatenate([b["label"] for b in a])
  # 192 labels over 10 balanced classes: a shuffled stream, not file order.
  assert len(np.unique(labels)) == 10


def test_empty_data_dir_is_the_tfds_default_not_the_working_directory(tmp_path, monkeypatch):
  """TFDS reads data_dir "" as the working directory (a relative path); configs mean its
  default by it (an absolute one, ~/tensorflow_datasets or $TFDS_DATA_DIR)."""
  monkeypatch.chdir(tmp_path)
  with pytest.raises(FileNotFoundError, match="not prepared in ") as error:
    datasets.get_image_dataset("fashion_mnist", "test", 8, 28, data_dir="", train=False)
  where = str(error.value).split("not prepared in ")[1].split(";")[0]
  assert os.path.isabs(where) and not where.startswith(str(tmp_path)), where

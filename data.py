"""What differs between kinds of data, behind one interface; nothing else asks.

`ToyData` (a 2-D distribution, exact density where known) and `ImageData` (a TFDS /
TFRecord image dataset) know the shape of one example, the training stream (a function
of the step, so a resumed run sees the same data), the held-out data, which metrics
apply (evaluation.py computes them) and how samples are pictured (infra/figures.py).
run/build.py makes one with `get_data`.
"""
import dataclasses
import functools
import math
import os
from typing import Callable, Iterator

import jax
import numpy as np

import datasets
import evaluation
import feature_nets
import likelihood
from infra import figures
from infra import files
from infra.errors import RunError

# loglik(key, x [N, ...], tag=None) -> logp [N] in nats, for any N (the caller batches;
# with a tag it may keep finished batches on disk under that name).
LogLikelihood = Callable[..., np.ndarray]


@dataclasses.dataclass(frozen=True)
class ToyData:
  distribution: datasets.ToyDistribution
  num_eval: int
  seed: int
  labelled = False
  feature_net = ""

  @property
  def example_shape(self) -> tuple[int, ...]:
    return (2,)

  def train_batches(self, step, n_steps, batch_size, sharding, labels=False) -> Iterator:
    """Global [n_steps, batch_size, 2] batches from optimizer step `step` on; each
    process draws its rows from fold_in(fold_in(data_key, step), process_index)."""
    del labels       # build refuses class-conditional 2-D runs
    sample_fn = jax.jit(self.distribution.sample, static_argnums=1)
    data_key = jax.random.split(jax.random.PRNGKey(self.seed + 1))[1]
    local = batch_size // jax.process_count()
    while True:
      key = jax.random.fold_in(jax.random.fold_in(data_key, step), jax.process_index())
      rows = np.asarray(sample_fn(key, n_steps * local)).reshape(n_steps, local, 2)
      yield jax.make_array_from_process_local_data(sharding, rows, (n_steps, batch_size, 2))
      step += n_steps

  @functools.cached_property
  def held_out(self) -> np.ndarray:
    """[num_eval, 2] fresh samples (a seed no training batch uses)."""
    return np.asarray(self.distribution.sample(jax.random.PRNGKey(self.seed + 10_000),
                                               self.num_eval))

  @property
  def held_out_labels(self) -> np.ndarray:
    return np.zeros(len(self.held_out), np.int32)

  def check_feature_net(self):
    """No feature network: nothing to check."""

  def likelihood_metrics(self, loglik: LogLikelihood, points: np.ndarray, repeats=1) -> dict:
    """NLL in nats; with a known density the paired gap, an estimate of KL(p || model).
    (Continuous data: `repeats` of dequantization do not apply.)"""
    del repeats
    nll = -loglik(jax.random.PRNGKey(0), points, "nll")
    metrics = evaluation.mean_and_se(nll, "nll")
    if self.distribution.log_prob is not None:
      true_nll = -np.asarray(self.distribution.log_prob(points))
      metrics["true_nll"] = float(true_nll.mean())
      metrics.update(evaluation.mean_and_se(nll - true_nll, "nll_gap"))
    return metrics

  def sample_metrics(self, x: np.ndarray) -> dict:
    return evaluation.point_metrics(x, self.held_out, self.distribution.mixture)

  def export(self, x: np.ndarray) -> tuple[str, np.ndarray]:
    """(file name, arr_0) of all samples in one file: float32 points [N, 2]."""
    return "samples.npz", np.asarray(x, np.float32)

  @property
  def _lim(self) -> float:
    return float(np.abs(self.held_out).max()) * 1.15

  def picture(self, x: np.ndarray) -> np.ndarray:
    return figures.point_histogram(x, self._lim)

  def figure(self, path: str, x: np.ndarray, loglik: LogLikelihood):
    """Held-out data, samples, learned (and true) density."""
    axis = np.linspace(-self._lim, self._lim, 64)
    grid = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2).astype(np.float32)
    panels = [("held-out data", self.held_out), ("samples", x),
              ("learned density", loglik(jax.random.PRNGKey(0), grid).reshape(64, 64))]
    if self.distribution.log_prob is not None:
      panels.append(("true density", np.asarray(self.distribution.log_prob(grid)).reshape(64, 64)))
    figures.point_panels(path, panels, self._lim)


@dataclasses.dataclass(frozen=True)
class ImageData:
  dataset: str
  data_dir: str
  image_size: int
  num_channels: int
  centered: bool
  random_flip: bool
  uniform_dequantization: bool
  num_eval: int
  seed: int
  feature_net: str = ""   # feature_nets.FEATURE_NETS name for FID / KID / IS / PR, or none
  fid_protocol: str = "uint8"     # evaluation.PROTOCOLS: how samples enter the feature net
  fid_reference: str = "train"    # the split of the reference images: "train" or "eval"
  fid_reference_size: int = 0     # its first N images; 0: all of it
  labelled = True

  @property
  def example_shape(self) -> tuple[int, ...]:
    return (self.image_size, self.image_size, self.num_channels)

  def _split(self, which: int) -> str:
    return datasets.TFDS_DATASETS.get(self.dataset, (None, "train", "train"))[which]

  def _stream(self, split, batch_size, train, **kwargs):
    try:
      return datasets.get_image_dataset(
          self.dataset, split, batch_size, self.image_size, data_dir=self.data_dir, train=train,
          random_flip=self.random_flip, uniform_dequantization=self.uniform_dequantization,
          **kwargs)
    except (FileNotFoundError, ValueError) as e:
      raise RunError(str(e).splitlines()[0]) from None

  def scale(self, images):
    return datasets.get_data_scaler(self.centered)(images)

  def unscale(self, x):
    return datasets.get_data_inverse_scaler(self.centered)(x)

  def train_batches(self, step, n_steps, batch_size, sharding, labels=False):
    """Global [n_steps, batch_size, S, S, C] batches (with `labels`: (images, labels
    [n_steps, batch_size]) pairs) from step `step` on; each process reads its own shard
    of the stream, resumed exactly by skipping."""
    local = batch_size // jax.process_count()
    stream = self._stream(self._split(1), n_steps * local, True, seed=self.seed,
                          shard=(jax.process_index(), jax.process_count()),
                          skip_batches=step // n_steps)
    for batch in stream:
      rows = self.scale(batch["image"]).reshape(n_steps, local, *self.example_shape)
      x = jax.make_array_from_process_local_data(sharding, rows,
                                                 (n_steps, batch_size, *self.example_shape))
      if not labels:
        yield x
        continue
      y = batch["label"].astype(np.int32).reshape(n_steps, local)
      yield x, jax.make_array_from_process_local_data(sharding, y, (n_steps, batch_size))

  def check_feature_net(self):
    """A RunError saying how to make the feature network if it is missing (the modes that
    compute features call this before writing anything)."""
    if self.feature_net:
      try:
        feature_nets.check_available(self.feature_net, self.data_dir)
      except (ValueError, FileNotFoundError) as e:
        raise RunError(f"config.eval.feature_net: {e}") from None

  def _reference_images(self) -> np.ndarray:
    """The first fid_reference_size images (0: all) of the reference split, [N, S, S, C]
    in [0, 1], in file order, without augmentation."""
    images, count = [], 0
    for batch in self._stream(self._split(1 if self.fid_reference == "train" else 2), 500, False):
      images.append(np.asarray(batch["image"], np.float32))
      count += len(images[-1])
      if self.fid_reference_size and count >= self.fid_reference_size:
        break
    return np.concatenate(images)[:self.fid_reference_size or None]

  @functools.cached_property
  def _reference_features(self) -> np.ndarray:
    """Feature-net features [N, D] of the reference images under fid_protocol, computed
    once and cached in <data_dir>/feature_nets/reference/<name>.npz, with their
    statistics beside in pytorch-fid's format (<name>_stats.npz: mu, sigma)."""
    split = self._split(1 if self.fid_reference == "train" else 2)
    name = (f"{self.dataset.replace('/', '_').replace(':', '_')}_{split}_"
            f"{self.fid_reference_size or 'all'}_{self.image_size}px_{self.fid_protocol}_"
            f"{self.feature_net}")
    folder = os.path.join(feature_nets.directory(self.data_dir), "reference")
    features = feature_nets.reference_features(
        self._feature_net,
        lambda: evaluation.protocol_images(self._reference_images(), self.fid_protocol),
        os.path.join(folder, name + ".npz"))[0]
    stats_path = os.path.join(folder, name + "_stats.npz")
    if jax.process_index() == 0 and not os.path.exists(stats_path):
      mu, sigma = evaluation.feature_statistics(features)
      files.save_npz(stats_path, mu=mu, sigma=sigma)
    return features

  @functools.cached_property
  def _feature_net(self) -> feature_nets.FeatureNet:
    return feature_nets.load(self.feature_net, self.data_dir)

  @functools.cached_property
  def _held_out(self) -> tuple[np.ndarray, np.ndarray]:
    images, labels, count = [], [], 0
    for batch in self._stream(self._split(2), 500, False):
      images.append(batch["image"])
      labels.append(batch["label"])
      count += len(batch["image"])
      if count >= self.num_eval:
        break
    return (np.asarray(self.scale(np.concatenate(images)[:self.num_eval])),
            np.concatenate(labels)[:self.num_eval].astype(np.int32))

  @property
  def held_out(self) -> np.ndarray:
    """The first num_eval images of the evaluation split, in the model's data range."""
    return self._held_out[0]

  @property
  def held_out_labels(self) -> np.ndarray:
    """Their class labels [num_eval] (0 for unlabelled datasets)."""
    return self._held_out[1]

  def likelihood_metrics(self, loglik: LogLikelihood, points: np.ndarray, repeats=1) -> dict:
    """Bits/dim under the probability-flow ODE of uniformly dequantized pixels
    (likelihood.bits_per_dim states each term), as score_sde measures it: each image
    dequantized `repeats` times (and a fresh trace-estimator draw each time); the mean
    over all, and its standard error from the per-image means (the images are independent)."""
    pixels = np.round(np.asarray(self.unscale(points)) * 255.0)
    dim = int(np.prod(points.shape[1:]))
    log_det = dim * math.log(2.0) if self.centered else 0.0
    bits = []
    for r in range(repeats):
      k_deq, k_div = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(self.seed + 50_000), r))
      x = np.asarray(self.scale(likelihood.dequantize(k_deq, pixels)))
      bits.append(likelihood.bits_per_dim(loglik(k_div, x, f"repeat{r}"), dim, log_det))
    return {**evaluation.mean_and_se(np.mean(bits, axis=0), "bits_per_dim"),
            "bpd_images": len(points), "bpd_repeats": repeats}

  def sample_metrics(self, x: np.ndarray) -> dict:
    """evaluation.image_metrics against the held-out images; with a feature net, FID,
    KID, IS, precision and recall against the reference images (fid_reference), both
    seen as fid_protocol says, and that protocol stated in "fid_protocol"."""
    metrics = evaluation.image_metrics(x, self.held_out, float(self.scale(0.0)),
                                       float(self.scale(1.0)))
    if self.feature_net:
      images = evaluation.protocol_images(np.asarray(self.unscale(x)), self.fid_protocol)
      features, logits = self._feature_net(images)
      metrics.update(evaluation.quality_metrics(self._reference_features, features, logits))
      metrics["fid_protocol"] = (f"{self.fid_protocol} samples ({len(features)}) against "
                                 f"{metrics['num_real']} {self.fid_reference}-split images, "
                                 f"{self.feature_net} features")
    return metrics

  def export(self, x: np.ndarray) -> tuple[str, np.ndarray]:
    """(file name, arr_0) of all samples in one file as external evaluators read them
    (ADM's format, pytorch-fid / clean-fid after unpacking): uint8 [N, S, S, C]."""
    return "samples_uint8.npz", evaluation.to_uint8(np.asarray(self.unscale(x)))

  def picture(self, x: np.ndarray) -> np.ndarray:
    """The first 64 samples as one grid image [H, W, C] in [0, 1]."""
    return figures.image_grid(np.asarray(self.unscale(x[:64])))

  def figure(self, path: str, x: np.ndarray, loglik: LogLikelihood):
    del loglik
    figures.save_image(path, self.picture(x))


def get_data(dataset: str, num_eval: int, seed: int, feature_net: str = "", fid=None,
             **image_settings):
  """ToyData or ImageData of config.data's values (image_settings: ImageData's other
  fields), with the quality metrics of `feature_net`: a feature_nets.FEATURE_NETS name,
  "auto" for the dataset's default, or "" for none (checked only by the modes that
  compute features); fid: ImageData's fid_* fields (images only)."""
  name = dataset
  if name in datasets.TOY_DISTRIBUTIONS:
    if feature_net:
      raise RunError(f"config.eval.feature_net={feature_net!r} is for image data; the "
                         f"2-D dataset {name!r} takes ''")
    return ToyData(datasets.get_toy_distribution(name), num_eval, seed)
  if not (name in datasets.TFDS_DATASETS or name.startswith(("lsun/", "tfrecords:"))):
    raise RunError(f"unknown config.data.dataset={name!r}; valid choices: "
                       f"{sorted(datasets.TOY_DISTRIBUTIONS) + sorted(datasets.TFDS_DATASETS)}, "
                       "'lsun/<category>', 'tfrecords:<folder>'")
  if feature_net == "auto":
    feature_net = feature_nets.default_name(name)
  if feature_net and feature_net not in feature_nets.FEATURE_NETS:
    raise RunError(f"unknown config.eval.feature_net={feature_net!r}; valid choices: "
                       f"{sorted(feature_nets.FEATURE_NETS)}, 'auto', ''")
  fid = fid or {}
  if fid.get("fid_protocol", "uint8") not in evaluation.PROTOCOLS:
    raise RunError(f"config.eval.fid_protocol={fid['fid_protocol']!r}; valid choices: "
                       f"{sorted(evaluation.PROTOCOLS)}")
  if fid.get("fid_reference", "train") not in ("train", "eval"):
    raise RunError(f"config.eval.fid_reference={fid['fid_reference']!r}; valid choices: "
                       "['eval', 'train']")
  return ImageData(dataset, num_eval=num_eval, seed=seed, feature_net=feature_net,
                   **fid, **image_settings)


IMAGE_DATA_KEYS = ("dataset", "num_eval", "data_dir", "image_size", "num_channels", "centered",
                   "random_flip", "uniform_dequantization")

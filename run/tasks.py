"""What differs between kinds of data, behind one interface; nothing else asks.

A task knows the shape of one example, the training stream (a pure function of the
step, so a resumed run sees the same data), the held-out data, the likelihood and
sample metrics, and how samples are drawn. `ToyTask`: a 2-D distribution (exact
density where known); `ImageTask`: a TFDS / TFRecord image dataset.
"""
import dataclasses
import functools
import math
import os
from typing import Callable, Iterator

import jax
import matplotlib
import numpy as np

import datasets
import evaluation
import feature_nets
import likelihood
import run

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

# loglik(key, x [N, ...], tag=None) -> logp [N] in nats, for any N (the caller batches;
# with a tag it may keep finished batches on disk under that name).
LogLikelihood = Callable[..., np.ndarray]


def mean_and_se(values, prefix: str) -> dict:
  values = np.asarray(values, np.float64)
  return {prefix: float(values.mean()),
          f"{prefix}_se": float(values.std(ddof=1) / math.sqrt(values.size))}


@dataclasses.dataclass(frozen=True)
class ToyTask:
  distribution: datasets.ToyDistribution
  num_eval: int
  seed: int

  @property
  def example_shape(self) -> tuple[int, ...]:
    return (2,)

  def train_batches(self, step, n_steps, batch_size, sharding, labels=False) -> Iterator[jax.Array]:
    """Global [n_steps, batch_size, 2] batches from optimizer step `step` on; each
    process draws its rows from fold_in(fold_in(data_key, step), process_index). (No
    labels: build.py refuses class-conditional toy runs.)"""
    del labels
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

  def likelihood_metrics(self, loglik: LogLikelihood, points: np.ndarray, repeats=1) -> dict:
    """NLL in nats; with a known density the paired gap, an estimate of KL(p || model).
    (Continuous data: `repeats` of dequantization do not apply.)"""
    del repeats
    nll = -loglik(jax.random.PRNGKey(0), points, "nll")
    metrics = mean_and_se(nll, "nll")
    if self.distribution.log_prob is not None:
      true_nll = -np.asarray(self.distribution.log_prob(points))
      metrics["true_nll"] = float(true_nll.mean())
      metrics.update(mean_and_se(nll - true_nll, "nll_gap"))
    return metrics

  def sample_metrics(self, x: np.ndarray) -> dict:
    n = min(len(x), self.num_eval)
    x, ref = x[:n], self.held_out[:n]
    metrics = {"sliced_wasserstein": float(evaluation.sliced_wasserstein(
                   jax.random.PRNGKey(0), x, ref)),
               "mmd2": float(evaluation.mmd2_unbiased(x, ref))}
    mixture = self.distribution.mixture
    if mixture is not None:
      means = np.asarray(mixture.means)
      nearest = np.argmin(((x[:, None] - means[None]) ** 2).sum(-1), axis=1)
      weights = np.bincount(nearest, minlength=len(means)) / n
      metrics["weights"] = [round(float(w), 4) for w in weights]
      metrics["true_weights"] = [round(float(w), 4) for w in np.asarray(mixture.weights)]
    return metrics

  def picture(self, x: np.ndarray) -> np.ndarray:
    """Samples as a [128, 128, 1] image in [0, 1]: a 2-D histogram over the held-out range."""
    lim = float(np.abs(self.held_out).max()) * 1.15
    counts, _, _ = np.histogram2d(x[:, 1], x[:, 0], bins=128, range=[[-lim, lim], [-lim, lim]])
    return (counts[::-1] / max(counts.max(), 1.0))[..., None]

  def figure(self, path: str, x: np.ndarray, loglik: LogLikelihood):
    """Held-out data, samples, learned (and true) density."""
    lim = float(np.abs(self.held_out).max()) * 1.15
    axis = np.linspace(-lim, lim, 64)
    grid = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2).astype(np.float32)
    panels = [("held-out data", self.held_out), ("samples", x),
              ("learned density", loglik(jax.random.PRNGKey(0), grid).reshape(64, 64))]
    if self.distribution.log_prob is not None:
      panels.append(("true density", np.asarray(self.distribution.log_prob(grid)).reshape(64, 64)))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2))
    for ax, (title, values) in zip(axes, panels):
      if values.shape[-1] == 2:
        ax.scatter(*values[:4000].T, s=1, alpha=0.4)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
      else:
        ax.imshow(np.exp(values), origin="lower", extent=(-lim, lim, -lim, lim))
      ax.set_title(title)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def image_grid(images: np.ndarray) -> np.ndarray:
  """[N, H, W, C] in [0, 1] -> one [rows H, cols W, C] image (cols = ceil(sqrt N)), 1 px
  white borders between tiles."""
  n, h, w, c = images.shape
  cols = math.ceil(math.sqrt(n))
  rows = math.ceil(n / cols)
  grid = np.ones((rows * (h + 1) - 1, cols * (w + 1) - 1, c), np.float32)
  for i, image in enumerate(np.clip(images, 0.0, 1.0)):
    r, col = divmod(i, cols)
    grid[r * (h + 1):r * (h + 1) + h, col * (w + 1):col * (w + 1) + w] = image
  return grid


@dataclasses.dataclass(frozen=True)
class ImageTask:
  data: dict          # the data config's values
  seed: int
  feature_net: str = ""   # feature_nets.FEATURE_NETS name for FID / KID / IS / PR, or none

  @property
  def example_shape(self) -> tuple[int, ...]:
    return (self.data["image_size"], self.data["image_size"], self.data["num_channels"])

  def _split(self, which: int) -> str:
    return datasets.TFDS_DATASETS.get(self.data["dataset"], (None, "train", "train"))[which]

  def _stream(self, split, batch_size, train, **kwargs):
    d = self.data
    try:
      return datasets.get_image_dataset(
          d["dataset"], split, batch_size, d["image_size"], data_dir=d["data_dir"],
          train=train, random_flip=d["random_flip"],
          uniform_dequantization=d["uniform_dequantization"], **kwargs)
    except (FileNotFoundError, ValueError) as e:
      raise run.RunError(str(e).splitlines()[0]) from None

  def scale(self, images):
    return datasets.get_data_scaler(self.data["centered"])(images)

  def unscale(self, x):
    return datasets.get_data_inverse_scaler(self.data["centered"])(x)

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

  @functools.cached_property
  def reference_features(self) -> np.ndarray:
    """Feature-net features [num_eval, D] of the held-out images, cached on disk under
    <data_dir>/feature_nets/reference/."""
    d = self.data
    name = (f"{d['dataset'].replace('/', '_').replace(':', '_')}_{self._split(2)}_"
            f"{d['image_size']}px_{d['num_eval']}_{self.feature_net}.npz")
    return feature_nets.reference_features(
        self._feature_net, lambda: np.asarray(self.unscale(self.held_out)),
        os.path.join(feature_nets.directory(d["data_dir"]), "reference", name))[0]

  @functools.cached_property
  def _feature_net(self) -> feature_nets.FeatureNet:
    return feature_nets.load(self.feature_net, self.data["data_dir"])

  @functools.cached_property
  def _held_out(self) -> tuple[np.ndarray, np.ndarray]:
    images, labels, count = [], [], 0
    for batch in self._stream(self._split(2), 500, False):
      images.append(batch["image"])
      labels.append(batch["label"])
      count += len(batch["image"])
      if count >= self.data["num_eval"]:
        break
    n = self.data["num_eval"]
    return (np.asarray(self.scale(np.concatenate(images)[:n])),
            np.concatenate(labels)[:n].astype(np.int32))

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
    log_det = dim * math.log(2.0) if self.data["centered"] else 0.0
    bits = []
    for r in range(repeats):
      k_deq, k_div = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(self.seed + 50_000), r))
      x = np.asarray(self.scale(likelihood.dequantize(k_deq, pixels)))
      bits.append(likelihood.bits_per_dim(loglik(k_div, x, f"repeat{r}"), dim, log_det))
    return {**mean_and_se(np.mean(bits, axis=0), "bits_per_dim"),
            "bpd_images": len(points), "bpd_repeats": repeats}

  def sample_metrics(self, x: np.ndarray) -> dict:
    """Distances to held-out images; garbage detectors (evaluation.py): samples whose
    pixels all lie within a quarter of the data range of it, and samples as close to the
    first 2000 held-out images as those images are to each other. With a feature net:
    FID, KID, IS, precision and recall against the held-out images (samples clipped to
    the data range first)."""
    n = min(len(x), len(self.held_out))
    flat, ref = x.reshape(len(x), -1), self.held_out[:2000].reshape(-1, x[0].size)
    low, high = float(self.scale(0.0)), float(self.scale(1.0))
    margin = (high - low) / 4
    metrics = {"sliced_wasserstein": float(evaluation.sliced_wasserstein(
                   jax.random.PRNGKey(0), flat[:n], ref[:n])),
               "sample_mean_abs_error": float(np.abs(flat.mean(0) - ref.mean(0)).mean()),
               "in_range_fraction": evaluation.in_range_fraction(flat, low - margin, high + margin),
               "near_data_fraction": evaluation.near_data_fraction(flat, ref)}
    if self.feature_net:
      features, logits = self._feature_net(np.clip(np.asarray(self.unscale(x)), 0.0, 1.0))
      metrics.update(feature_nets.quality_metrics(self.reference_features, features, logits))
    return metrics

  def picture(self, x: np.ndarray) -> np.ndarray:
    """The first 64 samples as one grid image [H, W, C] in [0, 1]."""
    return image_grid(np.asarray(self.unscale(x[:64])))

  def figure(self, path: str, x: np.ndarray, loglik: LogLikelihood):
    del loglik
    grid = self.picture(x)
    plt.imsave(path, grid[..., 0] if grid.shape[-1] == 1 else grid,
               cmap="gray" if grid.shape[-1] == 1 else None, vmin=0.0, vmax=1.0)


IMAGE_DATA_KEYS = ("dataset", "num_eval", "data_dir", "image_size", "num_channels", "centered",
                   "random_flip", "uniform_dequantization")


def get_task(data, seed: int, feature_net: str = ""):
  """The task of config.data: a toy distribution by name, else an image dataset (with
  the quality metrics of `feature_net`: a feature_nets.FEATURE_NETS name, "auto" for the
  dataset's default, or "" for none)."""
  name = data.dataset
  if name in datasets.TOY_DISTRIBUTIONS:
    if feature_net:
      raise run.RunError(f"config.eval.feature_net={feature_net!r} is for image data; the "
                         f"2-D dataset {name!r} takes ''")
    return ToyTask(datasets.get_toy_distribution(name), data.num_eval, seed)
  if not (name in datasets.TFDS_DATASETS or name.startswith(("lsun/", "tfrecords:"))):
    raise run.RunError(f"unknown config.data.dataset={name!r}; valid choices: "
                       f"{sorted(datasets.TOY_DISTRIBUTIONS) + sorted(datasets.TFDS_DATASETS)}, "
                       "'lsun/<category>', 'tfrecords:<folder>'")
  if feature_net == "auto":
    feature_net = feature_nets.default_name(name)
  if feature_net:
    try:
      feature_nets.check_available(feature_net, data.data_dir)
    except (ValueError, FileNotFoundError) as e:
      raise run.RunError(f"config.eval.feature_net: {e}") from None
  return ImageTask({k: data[k] for k in IMAGE_DATA_KEYS}, seed, feature_net)

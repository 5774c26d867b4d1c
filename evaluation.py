"""Sample-quality metrics on point sets or features x [n, D] and y [m, D]: the feature
metrics of the image literature (FID, KID, Inception Score, precision / recall), sample
distances (MMD, sliced Wasserstein) and detectors of samples that are not data-like.

The feature metrics run in float64 numpy on host arrays; which network gives the
features is the caller's choice (`feature_nets.py`).

The FID protocol (PROTOCOLS): by default samples are scored as they would be saved,
rounded to uint8, as TF-FID, pytorch-fid, clean-fid and EDM score PNG or uint8 files.
Statistics and images move in and out as files others read:

  python -m evaluation stats PATH --out stats.npz [--feature_net inception --data_dir D]
  python -m evaluation fid PATH1 PATH2 [--feature_net ... --data_dir ...]

PATH is a statistics file (pytorch-fid's `mu` / `sigma`; score_sde's `pool_3`
activations), samples in ADM's format (`arr_0`: uint8 [N, H, W, C]) or a folder of PNGs.
"""
import argparse
import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
import scipy.special


def _gaussian_kernel(a, b, bandwidth):
  sq = jnp.sum(a**2, -1)[:, None] + jnp.sum(b**2, -1)[None, :] - 2 * a @ b.T
  return jnp.exp(-jnp.maximum(sq, 0.0) / (2 * bandwidth**2))


def mmd2_unbiased(x, y, bandwidth=1.0):
  """Unbiased estimate of the squared maximum mean discrepancy (Gretton et al., 2012)
  with a Gaussian kernel; its expectation is 0 iff the two distributions agree."""
  n, m = x.shape[0], y.shape[0]
  k_xx = _gaussian_kernel(x, x, bandwidth)
  k_yy = _gaussian_kernel(y, y, bandwidth)
  k_xy = _gaussian_kernel(x, y, bandwidth)
  return ((jnp.sum(k_xx) - jnp.trace(k_xx)) / (n * (n - 1))
          + (jnp.sum(k_yy) - jnp.trace(k_yy)) / (m * (m - 1)) - 2 * jnp.mean(k_xy))


def sliced_wasserstein(key, x, y, n_projections=256):
  """Sliced 1-Wasserstein distance between equal-size sets x, y [n, D]: the mean over
  random unit directions of the 1-D Wasserstein distance of the projections."""
  directions = jax.random.normal(key, (n_projections, x.shape[1]))
  directions = directions / jnp.linalg.norm(directions, axis=1, keepdims=True)
  px = jnp.sort(x @ directions.T, axis=0)
  py = jnp.sort(y @ directions.T, axis=0)
  return jnp.mean(jnp.abs(px - py))


def nearest_distance(x, ref, leave_one_out=False) -> np.ndarray:
  """L2 distance [n] from each row of x [n, D] to its nearest row of ref [m, D]; with
  `leave_one_out` (x is ref) the nearest other row."""
  x, ref = np.asarray(x, np.float32), np.asarray(ref, np.float32)
  squared = (x**2).sum(1)[:, None] - 2.0 * x @ ref.T + (ref**2).sum(1)[None]
  if leave_one_out:
    np.fill_diagonal(squared, np.inf)
  return np.sqrt(np.maximum(squared.min(1), 0.0))


def near_data_fraction(x, ref, quantile=0.99) -> float:
  """The fraction of samples x [n, D] whose nearest reference point is no farther than
  the `quantile` of the same distance for the reference points ref [m, D] themselves
  (leave one out): samples as close to the data as real data is. Noise and saturated
  or smeared images score near 0; a perfect sampler scores about `quantile`."""
  threshold = np.quantile(nearest_distance(ref, ref, leave_one_out=True), quantile)
  return float(np.mean(nearest_distance(x, ref) <= threshold))


def in_range_fraction(x, low, high) -> float:
  """The fraction of samples x [n, D] whose coordinates all lie in [low, high]."""
  x = np.asarray(x)
  return float(np.mean(np.all((x >= low) & (x <= high), axis=1)))


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
  """(mean [D], covariance [D, D]) in float64 of features [n, D] (unbiased covariance)."""
  f = np.asarray(features, np.float64)
  return f.mean(0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
  """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (FID on Inception
  features): ||mu1 - mu2||^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)).

  As the reference implementations do: if the matrix square root of a (near-)singular
  product is not finite, eps I is added to both covariances; a small imaginary part
  from rounding is dropped, a large one is an error.
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
  if not np.all(np.isfinite(covmean)):
    offset = eps * np.eye(len(mu1))
    covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
  if np.iscomplexobj(covmean):
    if not np.allclose(np.diagonal(covmean).imag, 0.0, atol=1e-3):
      raise ValueError(f"sqrtm(sigma1 sigma2) has an imaginary part of "
                       f"{np.abs(covmean.imag).max():.3g}: the covariances are not PSD")
    covmean = covmean.real
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def _polynomial_mmd2_unbiased(x, y) -> float:
  """Unbiased MMD^2 of x [n, D], y [m, D] with the kernel (x.y / D + 1)^3."""
  d = x.shape[1]
  k_xx, k_yy, k_xy = ((a @ b.T / d + 1.0) ** 3 for a, b in ((x, x), (y, y), (x, y)))
  n, m = len(x), len(y)
  return float((k_xx.sum() - np.trace(k_xx)) / (n * (n - 1))
               + (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1)) - 2.0 * k_xy.mean())


def kernel_distance(f1, f2, num_subsets: int = 100, subset_size: int = 1000,
                    seed: int = 0) -> tuple[float, float]:
  """Kernel Inception Distance (Binkowski et al., 2018): the unbiased MMD^2 with the
  cubic kernel (x.y / D + 1)^3, averaged over `num_subsets` random subsets of
  min(subset_size, n1, n2) rows of each set; returns (mean, std over subsets). Unlike
  FID it is unbiased, so it can be compared across sample sizes."""
  f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
  size = min(subset_size, len(f1), len(f2))
  rng = np.random.default_rng(seed)
  values = [_polynomial_mmd2_unbiased(f1[rng.choice(len(f1), size, replace=False)],
                                      f2[rng.choice(len(f2), size, replace=False)])
            for _ in range(num_subsets)]
  return float(np.mean(values)), float(np.std(values))


def inception_score(logits, splits: int = 10) -> tuple[float, float]:
  """Inception Score (Salimans et al., 2016): exp E_x KL(p(y | x) || p(y)) in each of
  `splits` equal parts of logits [n, C] (p(y) the part's mean prediction); returns
  (mean, std over parts). 1 for uninformative predictions, C for confident predictions
  spread evenly over C classes."""
  logits = np.asarray(logits, np.float64)
  log_p = logits - scipy.special.logsumexp(logits, axis=1, keepdims=True)
  scores = []
  for part in np.array_split(log_p, splits):
    log_marginal = scipy.special.logsumexp(part, axis=0) - math.log(len(part))
    kl = np.sum(np.exp(part) * (part - log_marginal), axis=1)
    scores.append(math.exp(kl.mean()))
  return float(np.mean(scores)), float(np.std(scores))


def _pairwise_distances(a, b, block: int = 4096) -> np.ndarray:
  return np.concatenate([np.sqrt(np.maximum(
      (a[i:i + block] ** 2).sum(1)[:, None] - 2.0 * a[i:i + block] @ b.T + (b ** 2).sum(1)[None],
      0.0)) for i in range(0, len(a), block)])


def _covered_fraction(points, centres, k: int) -> float:
  """The fraction of points within the k-NN ball (k-th nearest other centre) of some centre."""
  radii = np.sort(_pairwise_distances(centres, centres), axis=1)[:, k]   # column 0: itself
  return float(np.mean(np.any(_pairwise_distances(points, centres) <= radii[None], axis=1)))


def precision_recall(real, fake, k: int = 3) -> tuple[float, float]:
  """Improved precision and recall (Kynkaanniemi et al., 2019) of features real [n, D]
  and fake [m, D]: precision is the fraction of fake samples inside the real manifold
  (the union of balls around each real sample reaching its k-th nearest real
  neighbour), recall the fraction of real samples inside the fake manifold."""
  real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
  return _covered_fraction(fake, real, k), _covered_fraction(real, fake, k)


def quality_metrics(real_features, fake_features, fake_logits, kid_subset_size=1000) -> dict:
  """FID, KID (mean and std over 100 subsets: a spread over reference subsets with the
  same samples, not a standard error), Inception Score, precision and recall of samples'
  features against a reference set's. Precision and recall compare sets of equal size
  (their k-NN radii depend on it): a random subset (seed 0) of the larger set."""
  fid = frechet_distance(*feature_statistics(real_features), *feature_statistics(fake_features))
  kid, kid_std = kernel_distance(real_features, fake_features, subset_size=kid_subset_size)
  inception, inception_std = inception_score(
      fake_logits, splits=min(10, max(1, len(fake_logits) // 50)))
  n = min(len(real_features), len(fake_features))
  subset = lambda f: np.asarray(f)[np.sort(np.random.default_rng(0).permutation(len(f))[:n])]
  precision, recall = precision_recall(subset(real_features), subset(fake_features))
  return {"fid": fid, "kid": kid, "kid_std": kid_std, "is": inception, "is_std": inception_std,
          "precision": precision, "recall": recall, "num_fake": len(fake_features),
          "num_real": len(real_features)}


def mean_and_se(values, name: str) -> dict:
  """{name: the mean, name_se: its standard error} of independent values [n]."""
  values = np.asarray(values, np.float64)
  se = values.std(ddof=1) / math.sqrt(values.size)
  return {name: float(values.mean()), f"{name}_se": float(se)}


def point_metrics(x, ref, mixture=None) -> dict:
  """2-D samples x [n, 2] against held-out points ref [>= n, 2]: sliced Wasserstein and
  MMD^2 on the first min(n, len(ref)); for a Gaussian mixture, the fraction of samples
  nearest to each component's mean beside the true weights."""
  n = min(len(x), len(ref))
  key = jax.random.PRNGKey(0)
  metrics = {"sliced_wasserstein": float(sliced_wasserstein(key, x[:n], ref[:n])),
             "mmd2": float(mmd2_unbiased(x[:n], ref[:n]))}
  if mixture is not None:
    means = np.asarray(mixture.means)
    nearest = np.argmin(((x[:n, None] - means[None]) ** 2).sum(-1), axis=1)
    weights = np.bincount(nearest, minlength=len(means)) / n
    metrics["weights"] = [round(float(w), 4) for w in weights]
    metrics["true_weights"] = [round(float(w), 4) for w in np.asarray(mixture.weights)]
  return metrics


def image_metrics(x, ref, low: float, high: float) -> dict:
  """Samples x [n, ...] against held-out images ref [m, ...] in the data range [low, high]:
  sliced Wasserstein on min(n, m) of each, the mean absolute error of the mean image, and
  two garbage detectors: samples within a quarter of the range of it
  (`in_range_fraction`), and samples as near the first 2000 images as those are to each
  other (`near_data_fraction`)."""
  flat, ref = x.reshape(len(x), -1), ref[:2000].reshape(-1, x[0].size)
  n, margin = min(len(flat), len(ref)), (high - low) / 4
  key = jax.random.PRNGKey(0)
  return {"sliced_wasserstein": float(sliced_wasserstein(key, flat[:n], ref[:n])),
          "sample_mean_abs_error": float(np.abs(flat.mean(0) - ref.mean(0)).mean()),
          "in_range_fraction": in_range_fraction(flat, low - margin, high + margin),
          "near_data_fraction": near_data_fraction(flat, ref)}


# --- The FID protocol and its files. ------------------------------------------------

PROTOCOLS = {
    "uint8": "images rounded to uint8 as saved, round(255 x) clipped to [0, 255], then / 255",
    "float": "images clipped to [0, 1], not quantized",
}


def to_uint8(images) -> np.ndarray:
  """Images [N, H, W, C] in [0, 1] -> uint8 [N, H, W, C]: round(255 x), clipped (EDM's
  rounding; score_sde truncates, which lowers every pixel by half a level on average)."""
  return np.clip(np.rint(np.asarray(images, np.float64) * 255.0), 0, 255).astype(np.uint8)


def protocol_images(images, protocol: str) -> np.ndarray:
  """The float32 images [N, H, W, C] in [0, 1] a feature network sees under `protocol`."""
  if protocol == "uint8":
    return to_uint8(images).astype(np.float32) / 255.0
  if protocol == "float":
    return np.clip(np.asarray(images, np.float32), 0.0, 1.0)
  raise ValueError(f"unknown FID protocol {protocol!r}; valid choices: {sorted(PROTOCOLS)}")


def _require(ok: bool, path: str, message: str):
  if not ok:
    raise ValueError(f"{path}: {message}")


def _read_pngs(path: str) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  names = sorted(n for n in os.listdir(path) if n.lower().endswith(".png"))
  _require(bool(names), path, "a folder with no .png files")
  images = []
  for name in names:
    with Image.open(os.path.join(path, name)) as image:
      pixels = np.asarray(image if image.mode == "L" else image.convert("RGB"))
    images.append(pixels[..., None] if pixels.ndim == 2 else pixels)
  shapes = sorted({x.shape for x in images})
  _require(len(shapes) == 1, path, f"PNGs of different shapes {shapes[:3]}")
  return np.stack(images)


def read_images_or_statistics(path: str):
  """("statistics", (mu [D], sigma [D, D])) or ("images", uint8 [N, H, W, C]) of `path`:
  a folder of PNGs, or an .npz with `mu` and `sigma` (pytorch-fid's statistics, also in
  ADM's reference batches), `pool_3` (score_sde's <dataset>_stats.npz: Inception pool_3
  activations [N, 2048]) or `arr_0` (ADM's samples, uint8). Anything else: a one-line
  ValueError naming the file, what it holds and what would do."""
  if os.path.isdir(path):
    return "images", _read_pngs(path)
  try:
    with np.load(path) as f:
      arrays = {k: f[k] for k in f.files}
  except (OSError, ValueError, EOFError) as e:
    raise ValueError(f"{path}: neither a folder of PNGs nor a readable .npz "
                     f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
  if "mu" in arrays and "sigma" in arrays:
    mu, sigma = arrays["mu"], arrays["sigma"]
    _require(mu.ndim == 1 and sigma.shape == (mu.size, mu.size)
             and np.issubdtype(mu.dtype, np.floating) and np.issubdtype(sigma.dtype, np.floating),
             path, f"mu {mu.dtype}{list(mu.shape)} and sigma {sigma.dtype}{list(sigma.shape)}; "
             "statistics need float mu [D] and sigma [D, D]")
    return "statistics", (mu.astype(np.float64), sigma.astype(np.float64))
  if "pool_3" in arrays:
    pool = arrays["pool_3"]
    _require(pool.ndim == 2 and len(pool) > 1 and np.issubdtype(pool.dtype, np.floating), path,
             f"pool_3 {pool.dtype}{list(pool.shape)}; activations need float [N > 1, D]")
    return "statistics", feature_statistics(pool)
  if "arr_0" in arrays:
    images = arrays["arr_0"]
    _require(images.dtype == np.uint8 and images.ndim == 4 and images.shape[-1] in (1, 3), path,
             f"arr_0 {images.dtype}{list(images.shape)}; samples need uint8 [N, H, W, C], C 1 or 3")
    return "images", images
  raise ValueError(f"{path}: keys {sorted(arrays)}; expected mu and sigma (statistics), pool_3 "
                   "(score_sde's activations) or arr_0 (ADM's uint8 samples [N, H, W, C])")


def statistics_of(path: str, features_fn) -> tuple[np.ndarray, np.ndarray, int]:
  """(mu, sigma, the number of images or 0 if read as statistics) of `path`;
  features_fn(images [N, H, W, C] float32 in [0, 1]) -> features [N, D]."""
  kind, value = read_images_or_statistics(path)
  if kind == "statistics":
    return (*value, 0)
  return (*feature_statistics(features_fn(value.astype(np.float32) / 255.0)), len(value))


def main(argv=None):
  """`stats` and `fid` (see the module doc); errors are one line and exit 2."""
  parser = argparse.ArgumentParser(prog="python -m evaluation")
  sub = parser.add_subparsers(dest="command", required=True)
  stats = sub.add_parser("stats", help="feature statistics (mu, sigma) of images")
  stats.add_argument("path")
  stats.add_argument("--out", required=True, help="pytorch-fid's .npz format (mu, sigma)")
  fid = sub.add_parser("fid", help="FID between two sets of images or statistics")
  fid.add_argument("paths", nargs=2)
  for command in (stats, fid):
    command.add_argument("--feature_net", default="inception")
    command.add_argument("--data_dir", default="", help="where feature_nets/ lives")
  args = parser.parse_args(argv)
  import feature_nets  # pylint: disable=g-import-not-at-top  (it imports the networks)
  try:
    net = None

    def features_fn(images):
      nonlocal net
      net = net or feature_nets.load(args.feature_net, args.data_dir)
      return net(images)[0]

    if args.command == "stats":
      mu, sigma, n = statistics_of(args.path, features_fn)
      from infra import files  # pylint: disable=g-import-not-at-top
      files.save_npz(args.out, mu=mu, sigma=sigma)
      print(f"{args.feature_net} statistics of {n} images -> {args.out}")
    else:
      (mu1, sigma1, n1), (mu2, sigma2, n2) = (statistics_of(p, features_fn) for p in args.paths)
      print(f"FID ({args.feature_net} features; images: {n1 or 'statistics'} vs "
            f"{n2 or 'statistics'}):")
      print(f"{frechet_distance(mu1, sigma1, mu2, sigma2):.12g}")
  except (ValueError, FileNotFoundError, OSError) as e:
    print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  main()

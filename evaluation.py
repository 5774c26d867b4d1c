"""Sample-based distances between point sets x [n, D] and y [m, D], and detectors of
samples that are not data-like."""
import jax
import jax.numpy as jnp
import numpy as np


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

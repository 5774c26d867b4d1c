"""Sample-based distances between point sets x [n, D] and y [m, D]."""
import jax
import jax.numpy as jnp


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

"""Data: 2-D toy distributions (samplers, with exact densities where known).

Each toy distribution is a `ToyDistribution`: `sample(key, n) -> [n, 2]`, and
`log_prob(x [B, 2]) -> [B]` where the density is known in closed form (else None).
"""
import dataclasses
import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp

import densities


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

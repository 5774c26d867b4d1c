"""Divergence (trace of the Jacobian) of batched vector fields, exact or by Hutchinson.

`fn` maps x [B, ...] to [B, ...] with no interaction between examples (no batch
statistics), so one Jacobian-vector product of the batched function gives the
per-example products J_b v_b.
"""
import math
from typing import Callable

import jax
import jax.numpy as jnp

PROBES = ("rademacher", "gaussian")


def sample_probe(key: jax.Array, shape: tuple[int, ...], kind: str) -> jax.Array:
  """Probe vectors with E[v v^T] = I: Rademacher (+-1) or standard Gaussian."""
  if kind == "rademacher":
    return jax.random.rademacher(key, shape).astype(jnp.float32)
  if kind == "gaussian":
    return jax.random.normal(key, shape)
  raise ValueError(f"unknown probe {kind!r}; valid choices: {list(PROBES)}")


def hutchinson(fn: Callable[[jax.Array], jax.Array], x: jax.Array, probe: jax.Array):
  """v^T (d fn / dx) v per example, [B]: an unbiased estimate of the divergence."""
  _, jvp = jax.jvp(fn, (x,), (probe,))
  return jnp.sum(jnp.reshape(jvp * probe, (x.shape[0], -1)), axis=-1)


def exact(fn: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
  """tr(d fn / dx) per example, [B], from D Jacobian-vector products (D = prod(x.shape[1:]))."""
  dim = math.prod(x.shape[1:])
  basis = jnp.eye(dim, dtype=x.dtype)

  def diagonal_entry(i):
    e_i = jnp.broadcast_to(jnp.reshape(basis[i], x.shape[1:]), x.shape)
    _, jvp = jax.jvp(fn, (x,), (e_i,))
    return jnp.reshape(jvp, (x.shape[0], dim))[:, i]

  return jnp.sum(jax.lax.map(diagonal_entry, jnp.arange(dim)), axis=0)

"""The device mesh and where the train state lives on it.

The mesh is ('data', 'model') over all devices: data_axis_size x model_axis_size. Batches
are split along 'data' (copies along 'model'). The train state (parameters, optimizer
state, EMA and post-hoc EMAs) is sharded along 'model' by one FSDP-style rule,
`partition_spec`, and replicated along 'data'; XLA inserts the gathers and reductions
each jitted function needs (no hand-written collectives). Consecutive devices form a
'model' group, so with model_axis_size dividing each host's device count a group never
spans hosts: its all-gathers stay on the host's interconnect. `put` and `to_host` move
host data onto the mesh and back.
"""
import math

import jax
from jax.experimental import multihost_utils
import numpy as np

P = jax.sharding.PartitionSpec

MIN_SHARDED_SIZE = 1024   # elements: smaller arrays (biases, norms, scalars) stay replicated


def make_mesh(model_axis_size: int) -> jax.sharding.Mesh:
  """All devices as a (device_count / model_axis_size, model_axis_size) mesh."""
  shape = (jax.device_count() // model_axis_size, model_axis_size)
  return jax.make_mesh(shape, ("data", "model"),
                       axis_types=(jax.sharding.AxisType.Auto,) * 2)


def partition_spec(shape: tuple[int, ...], model_axis_size: int) -> P:
  """The rule: an array of at least MIN_SHARDED_SIZE elements is split along 'model' on
  its largest axis that model_axis_size divides (the last of equal ones: a kernel's
  output features); every other array is replicated."""
  if model_axis_size == 1 or math.prod(shape) < MIN_SHARDED_SIZE:
    return P()
  axes = [i for i, n in enumerate(shape) if n % model_axis_size == 0]
  if not axes:
    return P()
  axis = max(axes, key=lambda i: (shape[i], i))
  return P(*("model" if i == axis else None for i in range(len(shape))))


def shardings(mesh: jax.sharding.Mesh, tree):
  """A NamedSharding by `partition_spec` for each array (or ShapeDtypeStruct) of tree."""
  size = mesh.shape["model"]
  return jax.tree_util.tree_map(
      lambda a: jax.sharding.NamedSharding(mesh, partition_spec(a.shape, size)), tree)


def abstract(mesh: jax.sharding.Mesh, shapes):
  """The ShapeDtypeStructs of `shapes` (a pytree of them) laid out by `shardings`."""
  return jax.tree_util.tree_map(
      lambda s, sharding: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
      shapes, shardings(mesh, shapes))


def to_host(x) -> np.ndarray:
  """A global array as one numpy array on every process."""
  if jax.process_count() > 1:
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)


def put(x: np.ndarray, sharding: jax.sharding.Sharding) -> jax.Array:
  """Host data that every process holds whole -> a global array laid out by `sharding`."""
  return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

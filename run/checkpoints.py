"""Orbax checkpoints in <workdir>/checkpoints, written synchronously and atomically: one
every `snapshot_freq_for_preemption` steps (the last two kept), every multiple of
`snapshot_freq` (kept for evaluation), one at the end and one on SIGTERM. Post-hoc EMA
snapshots (ema.py) go to <workdir>/ema_snapshots/<step>.msgpack."""
import glob
import os

from absl import logging
import flax.serialization
import jax
import numpy as np
import orbax.checkpoint as ocp

import ema
import feature_nets
import run


def manager(workdir: str, training) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=2, keep_period=training.snapshot_freq,
                                         enable_async_checkpointing=False)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                               options=options)


def save(mngr: ocp.CheckpointManager, state):
  step = int(state.step)
  if step not in mngr.all_steps():
    mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)), force=True)


_MISMATCH = "tree structures do not match"


def restore_latest(mngr: ocp.CheckpointManager, abstract_state, step=None):
  """The newest readable checkpoint (or the one of `step`) as (state, step), else
  (None, None); an unreadable one is reported and the previous one tried. Checkpoints of
  another train-state structure (another config) are a RunError."""
  mismatch = False
  for candidate in sorted(mngr.all_steps(), reverse=True) if step is None else [step]:
    try:
      restored = mngr.restore(candidate, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state)))
      return restored.state, candidate
    except Exception as e:  # pylint: disable=broad-except  (any corruption)
      logging.warning("checkpoint at step %d in %s is unreadable (%s: %s); falling back to "
                      "the previous one", candidate, mngr.directory, type(e).__name__,
                      str(e).splitlines()[0][:200] if str(e) else "")
      mismatch = _MISMATCH in str(e)
  if mismatch:
    raise run.RunError(
        f"the checkpoints in {mngr.directory} do not match this config's train state: a "
        "setting that shapes it (model, optim.grad_clip, training.posthoc_ema, ...) differs "
        "from the training run's; use its config")
  return None, None


def restore(mngr: ocp.CheckpointManager, abstract_state, step=None):
  """As restore_latest, but a missing checkpoint is a RunError."""
  state, restored_step = restore_latest(mngr, abstract_state, step)
  if state is None:
    raise run.RunError(f"no readable checkpoint in {mngr.directory}"
                       + (f" at step {step}" if step is not None else "") + "; train first")
  return state, restored_step


def check_workdir(workdir: str):
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_test_{jax.process_index()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise run.RunError(f"workdir {workdir!r} is not writable: {e.strerror}") from None


def save_ema_snapshot(directory: str, step: int, sigma_rels, averages):
  """Writes the tracked averages (one tree per sigma_rel) at `step` to
  <directory>/<step>.msgpack, atomically."""
  payload = {"step": step, "sigma_rels": {str(i): float(s) for i, s in enumerate(sigma_rels)},
             "averages": {str(i): jax.device_get(a) for i, a in enumerate(averages)}}
  os.makedirs(directory, exist_ok=True)
  feature_nets.write_atomically(os.path.join(directory, f"{step}.msgpack"),
                                flax.serialization.msgpack_serialize(payload))


def posthoc_ema(directory: str, sigma_rel: float, step: int):
  """The power EMA of relative width sigma_rel at `step`, rebuilt from the snapshots in
  `directory` taken at or before `step` (ema.posthoc_coefficients). Returns (params, the
  relative residual of its profile). No snapshot there: ValueError."""
  snapshots = []
  for path in glob.glob(os.path.join(directory, "*.msgpack")):
    if int(os.path.basename(path).split(".")[0]) <= step:
      with open(path, "rb") as f:
        snapshots.append(flax.serialization.msgpack_restore(f.read()))
  if not snapshots:
    raise run.RunError(f"no post-hoc EMA snapshot at or before step {step} in {directory}; "
                     "train with config.training.posthoc_ema.sigma_rels set")
  stored, trees = [], []
  for snapshot in snapshots:
    for i, average in snapshot["averages"].items():
      stored.append((int(snapshot["step"]), ema.gamma_of_sigma_rel(snapshot["sigma_rels"][i])))
      trees.append(average)
  coefficients, residual = ema.posthoc_coefficients(stored, (step, ema.gamma_of_sigma_rel(sigma_rel)))
  params = jax.tree_util.tree_map(
      lambda *leaves: np.einsum("k,k...->...", coefficients, np.stack(leaves).astype(np.float64)
                                ).astype(leaves[0].dtype), *trees)
  return params, residual

"""A workdir is one run's: it records the config it was made with (config.json), has
one writer at a time (a lock the kernel releases when the process dies), and holds
Orbax checkpoints in <workdir>/checkpoints: one every `preemption_freq` steps (the last
two kept), every multiple of `snapshot_freq` (kept for evaluation), one at the end and one
on SIGTERM. Saves are asynchronous and atomic: `save` returns once the state is copied off
the accelerator, and a background thread writes it to a temporary folder that it renames
to <step> when complete (a killed run leaves no partial <step>); the next save and
`finish` wait for it.

A checkpoint whose train state has other leaves (paths, shapes or dtypes) than this
config's is a WorkdirMismatch naming the first differing leaf and the config keys that
differ from config.json; one that cannot be read (truncated files) is reported and the
previous one tried. In a multi-process run, process 0 takes the lock and writes the
files other than the checkpoints (which Orbax writes together).
"""
import contextlib
import errno
import fcntl
import glob
import json
import os
import shutil
import socket

from absl import logging
import flax.serialization
import jax
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp

import ema
from infra import errors
from infra import files

_HELD = {}   # realpath -> [file descriptor, holders] of the locks this process holds


@contextlib.contextmanager
def open_for_writing(path: str, record: dict):
  """Makes `path`, checks that it is writable and takes its lock (process 0) for the
  duration; yields the config record differences (keys -> (recorded, now)) as a dict."""
  try:
    os.makedirs(path, exist_ok=True)
    if not os.access(path, os.W_OK | os.X_OK):
      raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
  except OSError as e:
    raise errors.WriteFailed(f"workdir {path!r} is not writable: {e.strerror}") from None
  with _lock(path) if jax.process_index() == 0 else contextlib.nullcontext():
    yield config_changes(path, record)


@contextlib.contextmanager
def _lock(path: str):
  real = os.path.realpath(path)
  if real not in _HELD:
    try:
      fd = os.open(os.path.join(real, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise errors.WriteFailed(f"workdir {path!r} is not writable: {e.strerror}") from None
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
      os.close(fd)
      raise errors.WorkdirLocked(f"workdir {path!r} is in use by {holder}; wait for it to "
                              "finish or use another --workdir") from None
    try:
      os.ftruncate(fd, 0)
      os.write(fd, f"pid {os.getpid()} on host {socket.gethostname()}".encode())
    except OSError:    # a full disk: the lock holds, its holder goes unnamed
      pass
    _HELD[real] = [fd, 0]
  _HELD[real][1] += 1
  try:
    yield
  finally:
    _HELD[real][1] -= 1
    if not _HELD[real][1]:
      os.close(_HELD.pop(real)[0])     # closing the descriptor releases the lock


def _flat(record: dict, prefix="") -> dict:
  out = {}
  for key, value in record.items():
    if isinstance(value, dict):
      out.update(_flat(value, f"{prefix}{key}."))
    else:
      out[prefix + key] = value
  return out


def config_changes(path: str, record: dict) -> dict:
  """{key: (recorded, now)} for the keys where `record` differs from <path>/config.json
  (none if there is no recorded config)."""
  recorded_path = os.path.join(path, "config.json")
  if not os.path.exists(recorded_path):
    return {}
  with open(recorded_path) as f:
    recorded = _flat(json.load(f))
  now = _flat(json.loads(json.dumps(record)))     # tuples as the JSON file has them: lists
  return {k: (recorded.get(k), now.get(k)) for k in sorted(recorded.keys() | now.keys())
          if recorded.get(k) != now.get(k)}


def record_config(path: str, record: dict):
  """Writes <path>/config.json once: the config the workdir was made with."""
  target = os.path.join(path, "config.json")
  if jax.process_index() == 0 and not os.path.exists(target):
    write_or_fail(target, json.dumps(record, indent=1, sort_keys=True).encode())


def _write_error(path: str, e: OSError) -> errors.RunError:
  """The one-line error of a failed write: a file where a folder should be (or the
  reverse) is bad input (RunError, exit 2); anything else (disk full, no permission) a
  WriteFailed."""
  in_the_way = (NotADirectoryError, FileExistsError, IsADirectoryError)
  error = errors.RunError if isinstance(e, in_the_way) else errors.WriteFailed
  return error(f"could not write {path}: {e.strerror or e}")


def write_or_fail(path: str, data: bytes):
  """files.write_atomically, with an OSError as a one-line error (_write_error)."""
  try:
    files.write_atomically(path, data)
  except OSError as e:
    raise _write_error(path, e) from None


def append_line(path: str, line: str):
  """Appends `line` and a newline to `path` (process 0), flushed to disk; an OSError is a
  one-line error (_write_error)."""
  if jax.process_index() == 0:
    try:
      with open(path, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())
    except OSError as e:
      raise _write_error(path, e) from None


def logged_steps(path: str) -> set:
  """The "step" of every line of the JSON-lines file `path` (`append_line`'s; none if the
  file is missing)."""
  if not os.path.exists(path):
    return set()
  with open(path) as f:
    return {json.loads(line)["step"] for line in f if line.strip()}


def save_npz(path: str, **arrays):
  """files.save_npz (process 0), with an OSError as a one-line error (_write_error)."""
  if jax.process_index() == 0:
    try:
      files.save_npz(path, **arrays)
    except OSError as e:
      raise _write_error(path, e) from None


def manager(path: str, snapshot_freq: int) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=2, keep_period=snapshot_freq,
                                         enable_async_checkpointing=True)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(path), "checkpoints"),
                               options=options,
                               item_handlers={"state": ocp.StandardCheckpointHandler()})


def save(mngr: ocp.CheckpointManager, state, record: dict):
  """Starts saving `state` at its step (once), after the save in flight is committed;
  returns while the checkpoint is written. A save that fails for a full disk or lack of
  permission (this one, or the one in flight): a WriteFailed naming the last good
  checkpoint, with Orbax's temporary folder removed."""
  step = int(state.step)
  if step in mngr.all_steps():
    return
  finish(mngr, record)
  try:
    mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)), force=True)
  except (OSError, ValueError) as e:
    raise _write_failed(mngr, step, e) from None


def finish(mngr: ocp.CheckpointManager, record: dict):
  """Waits until the save in flight (if any) is committed, then records the config
  (`record_config`) if a checkpoint exists; a failed save as in `save`."""
  in_flight = mngr.latest_step()     # steps only grow: the save in flight is the newest
  try:
    mngr.wait_until_finished()
  except (OSError, ValueError) as e:
    raise _write_failed(mngr, in_flight, e) from None
  if mngr.all_steps():
    record_config(os.path.dirname(mngr.directory), record)


def _write_failed(mngr: ocp.CheckpointManager, step: int, e: Exception):
  """The WriteFailed for a full disk or lack of permission while writing the checkpoint
  of `step`, after removing its temporary folder; any other error re-raised."""
  cause = e
  while cause.__cause__ is not None and not isinstance(cause, OSError):
    cause = cause.__cause__
  if not isinstance(cause, OSError) and "No space left" not in str(e):
    raise e
  if jax.process_index() == 0:
    for leftover in glob.glob(os.path.join(mngr.directory, f"{step}")) + glob.glob(
        os.path.join(mngr.directory, f"{step}.*")):    # the folder and its temporary one
      shutil.rmtree(leftover, ignore_errors=True)
  reason = os.strerror(errno.ENOSPC) if "No space left" in str(e) else (
      getattr(cause, "strerror", None) or str(cause).splitlines()[0])
  return errors.WriteFailed(f"could not write the checkpoint of step {step} to "
                         f"{mngr.directory}: {reason}; {last_good(mngr, step)}")


def last_good(mngr: ocp.CheckpointManager, failed_step=None) -> str:
  """'the last good checkpoint is <path>' (or 'none'), for error messages: the newest
  checkpoint, counting the one in flight (a caller about to stop waits for it with
  `finish`, which reports its failure instead)."""
  last = max((s for s in mngr.all_steps() if s != failed_step), default=None)
  return "the last good checkpoint is " + (
      f"{mngr.directory}/{last}" if last is not None else "none")


def load_state(exp, path: str, step=None):
  """(train state, step) of <path>'s checkpoint of `step` (None: the newest readable)."""
  return restore(manager(path, exp.train.snapshot_freq), exp.abstract_state, exp.record, step)


def restore_or_init(mngr: ocp.CheckpointManager, abstract_state, record: dict, changes: dict,
                    init_state):
  """The state to train from: the newest readable checkpoint (logging the config
  `changes` since the run began, open_for_writing's), else init_state()."""
  state, step = restore(mngr, abstract_state, record, required=False)
  if state is None:
    return init_state()
  logging.info("resumed from step %d", step)
  if changes:
    logging.warning("resuming with settings changed since the run began (config.json): %s",
                    ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changes.items()))
  return state


def _leaves(tree) -> dict:
  """{path: (shape, dtype)} with paths as plain names (checkpoint metadata key tuple
  items and dataclass fields by name or index as strings)."""
  def name(entry):
    for attr in ("key", "name", "idx"):
      if hasattr(entry, attr):
        return str(getattr(entry, attr))
    return str(entry)
  return {"/".join(name(e) for e in path): (tuple(leaf.shape), str(leaf.dtype))
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _check_structure(mngr, step: int, abstract_state, record: dict):
  stored = _leaves(mngr.item_metadata(step)["state"])
  expected = _leaves(abstract_state)
  if stored == expected:
    return
  first = min(k for k in stored.keys() | expected.keys() if stored.get(k) != expected.get(k))
  describe = lambda leaves: (f"{first} of shape {leaves[first][0]} {leaves[first][1]}"
                             if first in leaves else f"no leaf {first}")
  workdir = os.path.dirname(mngr.directory)
  changes = config_changes(workdir, record)
  keys = ", ".join(f"{k} ({a!r} -> {b!r})" for k, (a, b) in changes.items()) or (
      "none found in config.json" if os.path.exists(os.path.join(workdir, "config.json"))
      else "unknown (no config.json)")
  raise errors.WorkdirMismatch(
      f"the checkpoint {mngr.directory}/{step} holds another train state: it has "
      f"{describe(stored)} where this config has {describe(expected)}; config keys that "
      f"differ from the run's: {keys}; use another --workdir, or set those keys back")


def restore(mngr: ocp.CheckpointManager, abstract_state, record: dict, step=None,
            required=True):
  """(state, step) of the newest readable checkpoint (or of `step`); an unreadable one is
  reported and the previous one tried. None found: (None, None), or a RunError if
  `required`. Another config's checkpoint: WorkdirMismatch, before anything is read."""
  for candidate in sorted(mngr.all_steps(), reverse=True) if step is None else [step]:
    try:
      metadata_ok = mngr.item_metadata(candidate)["state"] is not None
    except Exception:  # pylint: disable=broad-except  (any corruption of the metadata)
      metadata_ok = False
    if metadata_ok:
      _check_structure(mngr, candidate, abstract_state, record)
      try:
        restored = mngr.restore(candidate, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state)))
        return restored.state, candidate
      except Exception as e:  # pylint: disable=broad-except  (any corruption of the arrays)
        reason = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    else:
      reason = "its metadata cannot be read"
    logging.warning("checkpoint at step %d in %s is unreadable (%s); falling back to the "
                    "previous one", candidate, mngr.directory, reason)
  if required:
    raise errors.RunError(f"no readable checkpoint in {mngr.directory}"
                       + (f" at step {step}" if step is not None else "") + "; train first")
  return None, None


def restore_part(path: str, step: int, part: str, abstract):
  """The field `part` (e.g. "ema_params") of the train state in <path>'s checkpoint of
  `step`, laid out as `abstract` (ShapeDtypeStructs with shardings), whatever the rest of
  that state holds (another run's optimizer state: read from the checkpoint's metadata,
  replicated, and dropped); shapes other than `abstract`'s are a WorkdirMismatch."""
  mngr = manager(path, 1)
  stored = mngr.item_metadata(step)["state"]
  stored = {name: stored[name] for name in stored.keys()}
  if _leaves(stored[part]) != _leaves(abstract):
    raise errors.WorkdirMismatch(f"the checkpoint {mngr.directory}/{step} holds another "
                                 f"network: its {part} differ from this config's")
  mesh = jax.tree_util.tree_leaves(abstract)[0].sharding.mesh
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  target = {name: abstract if name == part else jax.tree_util.tree_map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=replicated), tree)
            for name, tree in stored.items()}
  restored = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
  return restored.state[part]


def save_ema_snapshot(path: str, step: int, sigma_rels, averages):
  """The tracked power EMAs (one tree per sigma_rel) at `step`, to
  <path>/ema_snapshots/<step>.msgpack (process 0)."""
  if jax.process_count() > 1:    # all processes: arrays sharded along 'model' gathered
    averages = multihost_utils.process_allgather(averages, tiled=True)
  if jax.process_index() == 0:
    payload = {"step": step, "sigma_rels": {str(i): float(s) for i, s in enumerate(sigma_rels)},
               "averages": {str(i): jax.device_get(a) for i, a in enumerate(averages)}}
    os.makedirs(os.path.join(path, "ema_snapshots"), exist_ok=True)
    write_or_fail(os.path.join(path, "ema_snapshots", f"{step}.msgpack"),
                  flax.serialization.msgpack_serialize(payload))


def posthoc_ema(path: str, sigma_rel: float, step: int):
  """ema.posthoc_average of the snapshots in <path>/ema_snapshots taken at or before
  `step`: (parameters, relative residual). None there: a RunError."""
  snapshots = []
  for name in glob.glob(os.path.join(path, "ema_snapshots", "*.msgpack")):
    if int(os.path.basename(name).split(".")[0]) <= step:
      with open(name, "rb") as f:
        snapshots.append(flax.serialization.msgpack_restore(f.read()))
  if not snapshots:
    raise errors.RunError(f"no post-hoc EMA snapshot at or before step {step} in "
                       f"{path}/ema_snapshots; train with config.training.posthoc_ema."
                       "sigma_rels set")
  return ema.posthoc_average(snapshots, sigma_rel, step)

"""Atomic file writes: a killed or failed write leaves the previous file (or none), never a
half-written one, and no temporary file behind."""
import io
import os
import tempfile

import numpy as np


def write_atomically(path: str, data: bytes):
  """Writes `data` to `path` (making its folder) through a temporary file in the same
  folder, synced, then renamed over `path`."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp_")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def save_npz(path: str, **arrays):
  """np.savez(path, **arrays), atomically."""
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  write_atomically(path, buffer.getvalue())

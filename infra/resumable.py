"""Work kept in files as it is done, so that a killed run resumes without redoing it: a
folder claimed by the settings its files were made with, batches and rounds written one
file each (by process 0, atomically: infra/workdir.save_npz) and read back instead of
recomputed."""
import glob
import json
import os

import jax
import numpy as np

from infra import errors
from infra import workdir as wd


def claim(out_dir: str, settings: dict):
  """out_dir/settings.json records the settings of out_dir's rounds: rounds drawn with
  other settings are a RunError (never silently mixed in). Without rounds it blocks
  nothing (a run that failed before drawing one is simply redone)."""
  path = os.path.join(out_dir, "settings.json")
  text = json.dumps(settings, sort_keys=True, indent=1)
  if os.path.exists(path) and glob.glob(os.path.join(out_dir, "round_*.npz")):
    with open(path) as f:
      if f.read() != text:
        raise errors.RunError(f"{out_dir} holds samples drawn with other sampling settings "
                              "(see its settings.json); remove it to draw them anew")
  elif jax.process_index() == 0:
    wd.write_or_fail(path, text.encode())


def rounds(draw, num_rounds: int, out_dir=None) -> tuple[list, int]:
  """([draw(r)'s x for r < num_rounds], the last nfe): draw(r) -> (x, nfe) as numpy and
  int. With out_dir, round r is kept in out_dir/round_<r>.npz and read back if there."""
  xs, nfe = [], 0
  for r in range(num_rounds):
    path = out_dir and os.path.join(out_dir, f"round_{r:05d}.npz")
    if path and os.path.exists(path):
      with np.load(path) as saved:
        x, nfe = saved["samples"], int(saved["nfe"])
    else:
      x, nfe = draw(r)
      if path:
        wd.save_npz(path, samples=x, nfe=nfe, round=r)
    xs.append(x)
  return xs, nfe


def batched(fn, x: np.ndarray, batch_size: int, cache_prefix=None) -> np.ndarray:
  """fn(i, batch [batch_size, ...]) over x in batches; the last one is padded by
  repeating its final row (one compiled shape), and the padding dropped. With
  cache_prefix, batch i's output is read from / written to <cache_prefix>_<i>.npz."""
  outputs = []
  for i, start in enumerate(range(0, len(x), batch_size)):
    path = cache_prefix and f"{cache_prefix}_{i:05d}.npz"
    if path and os.path.exists(path):
      with np.load(path) as saved:
        outputs.append(saved["output"])
      continue
    batch = x[start:start + batch_size]
    padding = np.repeat(batch[-1:], batch_size - len(batch), axis=0)
    outputs.append(fn(i, np.concatenate([batch, padding]))[:len(batch)])
    if path:
      wd.save_npz(path, output=outputs[-1])
  return np.concatenate(outputs)

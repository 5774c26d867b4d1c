r"""Imports a score_sde checkpoint (flax msgpack, as released by Song et al., 2021) into a
workdir that `main.py --mode sample / eval` read as they are:

  python -m tools.import_score_sde --checkpoint checkpoint_26 \
      --config configs/score_sde.py:ve/cifar10_ncsnpp_continuous --workdir runs/ve_ncsnpp_published
  python main.py --config configs/score_sde.py:ve/cifar10_ncsnpp_continuous \
      --workdir runs/ve_ncsnpp_published --mode sample

The checkpoint is read with flax.serialization.msgpack_restore (no score_sde code);
its EMA parameters (`params_ema`, what score_sde samples and evaluates; --noema: the raw
`optimizer.target`) are renamed onto this codebase's network by tools/score_sde_port.py and
written, with the checkpoint's step, as both the parameters and the EMA parameters of a
train state whose optimizer state is fresh (resuming training from it restarts Adam's
moments). The config must be the checkpoint's, through configs/score_sde.py (its
conventions); <workdir>/imported_from.json records the source.
"""
import json
import os
import sys

from absl import app
from absl import flags
import flax.serialization
import jax
import jax.numpy as jnp
from ml_collections import config_flags

import losses
import run
from infra import workdir as run_workdir
from run import build
from tools import score_sde_port

FLAGS = flags.FLAGS


def read_checkpoint(path: str, ema: bool = True) -> tuple[dict, int]:
  """(score_sde parameter tree, step) of a score_sde checkpoint file."""
  if not os.path.isfile(path):
    raise run.RunError(f"no checkpoint file {path!r}")
  with open(path, "rb") as f:
    data = f.read()
  try:
    restored = flax.serialization.msgpack_restore(data)
  except Exception as e:  # pylint: disable=broad-except
    raise run.RunError(f"cannot read {path!r} as a flax msgpack checkpoint "
                       f"({type(e).__name__}: {e})") from None
  if not isinstance(restored, dict):
    raise run.RunError(f"{path!r} is not a score_sde checkpoint (its top level is a "
                       f"{type(restored).__name__}, not a dict)")
  try:
    tree = restored["params_ema"] if ema else restored["optimizer"]["target"]
  except (KeyError, TypeError):
    wanted = "params_ema" if ema else "optimizer.target"
    raise run.RunError(f"{path!r} has no {wanted} (top-level keys: {sorted(restored)}); "
                       "is it a score_sde checkpoint?") from None
  return tree, int(restored.get("step", 0))


def import_checkpoint(path: str, config, workdir: str, ema: bool = True) -> int:
  """Writes the converted checkpoint into `workdir`; returns its step."""
  theirs, step = read_checkpoint(path, ema)
  exp = build.build(config)
  target = jax.tree_util.tree_map(lambda a: a.shape, exp.abstract_state.params)
  try:
    params = score_sde_port.convert(theirs, target)
  except score_sde_port.ConversionError as e:
    raise run.RunError(str(e)) from None
  with run_workdir.open_for_writing(workdir, exp.record):
    mngr = run_workdir.manager(workdir, exp.train.snapshot_freq)
    if mngr.all_steps():
      raise run.RunError(f"{workdir!r} already has checkpoints (steps {mngr.all_steps()}); "
                         "import into a new workdir")
    params = jax.tree_util.tree_map(jnp.asarray, params)
    state = losses.TrainState(step=jnp.asarray(step, jnp.int32), params=params,
                              opt_state=exp.optimizer.init(params), ema_params=params)
    run_workdir.save(mngr, state, exp.record)
    run_workdir.finish(mngr, exp.record)
    run_workdir.write_or_fail(os.path.join(workdir, "imported_from.json"), json.dumps(
        {"checkpoint": os.path.abspath(path), "step": step,
         "parameters": "params_ema" if ema else "optimizer.target"}, indent=1).encode())
  return step


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    step = import_checkpoint(FLAGS.checkpoint, FLAGS.config, FLAGS.workdir, FLAGS.ema)
  except run.RunError as e:
    sys.exit(f"error: {e}")
  print(f"imported {FLAGS.checkpoint} (step {step}) into {FLAGS.workdir}")


def define_flags():
  """The command's flags (defined only when it runs: importing this module defines none)."""
  flags.DEFINE_string("checkpoint", None, "A score_sde checkpoint file (checkpoint_<n>).")
  flags.DEFINE_string("workdir", None, "New workdir to write the imported checkpoint to.")
  flags.DEFINE_bool("ema", True, "Import params_ema (score_sde's evaluated parameters); "
                    "--noema imports optimizer.target.")
  config_flags.DEFINE_config_file("config", None, "configs/score_sde.py:<name> of the checkpoint.",
                                  lock_config=True)
  flags.mark_flags_as_required(["checkpoint", "workdir", "config"])


if __name__ == "__main__":
  define_flags()
  app.run(main)

r"""Score-based generative modelling: train, evaluate and sample from the command line.

  python main.py --config configs/toy/vp_gmm.py --workdir runs/vp_gmm --mode train_eval
  python main.py --config configs/toy/ve_gmm.py --workdir runs/ve --mode train \
      --config.training.batch_size=256

Modes: train (resumes from <workdir>/checkpoints), eval (every kept snapshot,
resumable), sample (one checkpoint -> .npz + .png), train_eval (train, then write
<workdir>/metrics.json and <workdir>/report.png), inpaint / colorize (one checkpoint
completes held-out images: config.controllable; run/controllable.py), train_classifier
(the noise-conditional classifier of classifier guidance: config.classifier,
run/classifier.py; sample with config.sampling.classifier_scale > 0).

Settings: every key of the config file can be overridden as --config.<section>.<key>=value
(e.g. --config.sampling.method=ddim --config.sampling.ddim.num_steps=20); the keys, with
their meaning, are in configs/default_toy.py and the config file's own base; a misspelt
key stops the run naming the closest valid one.
Multi-host: pass --coordinator_address, --num_processes and --process_id (or
--multihost alone where JAX detects the cluster, e.g. on TPU pods).
Exit codes: 0 finished; 2 bad input; 3 the workdir holds another config's run; 4 the
workdir is in use; 5 a write failed; 6 non-finite loss; 75 stopped by SIGTERM after
saving (rerun to resume); 1 a bug (with a traceback). README: "When a run stops".
"""
import errno
import logging as py_logging
import sys
import traceback

from infra import xla_cpu

xla_cpu.choose_cpu_kernels()   # before JAX starts its backend

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import logging  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
from ml_collections import config_flags  # pylint: disable=g-import-not-at-top,wrong-import-position

import run  # pylint: disable=g-import-not-at-top,wrong-import-position
from run import build  # pylint: disable=g-import-not-at-top,wrong-import-position
from run import classifier  # pylint: disable=g-import-not-at-top,wrong-import-position
from run import controllable  # pylint: disable=g-import-not-at-top,wrong-import-position
from run import evaluate  # pylint: disable=g-import-not-at-top,wrong-import-position
from run import train  # pylint: disable=g-import-not-at-top,wrong-import-position

config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and outputs.")
flags.DEFINE_enum("mode", "train", ["train", "eval", "sample", "train_eval", "inpaint",
                                    "colorize", "train_classifier"], "What to run.")
flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() (cluster auto-detected).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for multi-process runs.")
flags.DEFINE_integer("num_processes", None, "Number of processes of a multi-process run.")
flags.DEFINE_integer("process_id", None, "This process's index in a multi-process run.")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS

MODES = {"train": train.train,
         "eval": evaluate.evaluate,
         "sample": evaluate.sample,
         "train_eval": train.train_eval,
         "inpaint": controllable.inpaint,
         "colorize": controllable.colorize,
         "train_classifier": classifier.train_classifier}


WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


class _QuietLibraries(py_logging.Filter):
  """Drops the INFO chatter of checkpointing and TPU probing; keeps their warnings."""

  def filter(self, record):
    noisy = any(part in record.pathname for part in ("/orbax/", "xla_bridge"))
    return record.levelno >= py_logging.WARNING or not noisy


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.get_absl_handler().addFilter(_QuietLibraries())
  if FLAGS.coordinator_address:
    # Collectives between CPU processes need gloo; the setting is inert on GPU/TPU.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  elif FLAGS.multihost:
    jax.distributed.initialize()
  logging.info("process %d/%d, %d local / %d global devices (%s)", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count(),
               jax.default_backend())
  try:
    MODES[FLAGS.mode](build.build(load_config()), FLAGS.workdir)
  except run.RunError as e:
    print(f"{e.label}: {e}", file=sys.stderr)
    sys.exit(e.exit_code)
  except OSError as e:     # a file operation the drivers do not wrap: still one line
    where = f" ({e.filename})" if e.filename else ""
    print(f"error: {e.strerror or e}{where}", file=sys.stderr)
    sys.exit(run.WriteFailed.exit_code if e.errno in WRITE_ERRNOS else run.RunError.exit_code)


def _config_file_error(e: Exception) -> str:
  """One line for a config file that is missing or fails to load: its innermost cause,
  and where the file raised it."""
  cause = e
  while cause.__cause__ is not None or cause.__context__ is not None:
    cause = cause.__cause__ or cause.__context__
  lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
  if isinstance(cause, SyntaxError):
    detail, where = cause.msg, (cause.filename, cause.lineno)
  else:
    frame = traceback.extract_tb(cause.__traceback__)[-1] if cause.__traceback__ else None
    detail, where = (lines[-1] if lines else ""), frame and (frame.filename, frame.lineno)
  at = f" ({where[0]}, line {where[1]})" if where and not isinstance(cause, OSError) else ""
  return f"config file does not load: {type(cause).__name__}: {detail}{at}"


def load_config():
  """FLAGS.config; a file that could not be read (which ml_collections reports only
  now) is a RunError."""
  try:
    FLAGS.config.keys()        # a missing file is reported on first use
    return FLAGS.config
  except OSError as e:
    raise run.RunError(_config_file_error(e)) from None


def parse_flags(argv):
  """absl's parser, with --help on standard output and exit 0, and a misspelt override
  key or a config file that fails to load (a syntax error, an exception in get_config)
  as a one-line error (exit 2)."""
  if any(a in ("--help", "-h", "--helpshort", "--helpfull", "-?") for a in argv[1:]):
    print(__doc__)
    print(FLAGS.main_module_help())
    sys.exit(0)
  try:
    return app.parse_flags_with_usage(argv)
  except AttributeError as e:    # ml_collections: a misspelt key, as a wrapped KeyError
    cause = e.args[0] if e.args else e
    message = str(cause.args[0] if isinstance(cause, KeyError) and cause.args else cause)
    print(f"error: unknown config key in an override: {' '.join(message.split())}",
          file=sys.stderr)
    sys.exit(2)
  except Exception as e:  # pylint: disable=broad-except  (whatever the config file raises)
    print(f"error: {_config_file_error(e)}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)

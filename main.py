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
Multi-host: pass --coordinator_address, --num_processes and --process_id (or
--multihost alone where JAX detects the cluster, e.g. on TPU pods).
"""
import logging as py_logging
import sys

import xla_cpu

xla_cpu.choose_cpu_kernels()   # before JAX starts its backend

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import logging  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
from ml_collections import config_flags

import run
from run import build
from run import classifier
from run import controllable
from run import evaluate
from run import train

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
         "train_eval": lambda exp, w: evaluate.report(exp, w, train.train(exp, w)[0]),
         "inpaint": controllable.inpaint,
         "colorize": controllable.colorize,
         "train_classifier": classifier.train_classifier}


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
    MODES[FLAGS.mode](build.build(FLAGS.config), FLAGS.workdir)
  except run.RunError as e:
    sys.exit(f"error: {e}")


def parse_flags(argv):
  """absl's parser, with a misspelt config override (which ml_collections reports as an
  AttributeError with a traceback) turned into a one-line error."""
  try:
    return app.parse_flags_with_usage(argv)
  except AttributeError as e:
    cause = e.args[0] if e.args else e                  # ml_collections wraps a KeyError
    message = str(cause.args[0] if isinstance(cause, KeyError) and cause.args else cause)
    sys.exit(f"error: unknown config key in an override: {' '.join(message.split())}")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)

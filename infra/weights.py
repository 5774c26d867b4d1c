"""The parameters a mode reads from workdirs: the evaluated parameters of a checkpoint
(its EMA, or a post-hoc EMA rebuilt from the stored snapshots), the autoguiding weak
model of another workdir, consistency distillation's teacher, and the noise-conditional
classifier of classifier guidance.
What is missing is a one-line RunError naming the setting or the command that makes it."""
import os

from absl import logging
import flax.serialization
import jax
import jax.numpy as jnp

from infra import errors
from infra import workdir as wd


def evaluation_params(exp, path: str, state):
  """The parameters that are evaluated and sampled: the train state's EMA or, with
  eval.posthoc_sigma_rel > 0, the post-hoc EMA of that width at the state's step,
  rebuilt from <path>/ema_snapshots (its profile's relative residual is logged)."""
  sigma_rel = exp.eval.posthoc_sigma_rel
  if not sigma_rel:
    return state.ema_params
  params, residual = wd.posthoc_ema(path, sigma_rel, int(state.step))
  logging.info("post-hoc EMA sigma_rel %g at step %d (profile residual %.2e)", sigma_rel,
               int(state.step), residual)
  return params


def restore_params(exp, path: str):
  """(evaluation parameters, step) of eval.checkpoint_step (None: the latest)."""
  state, step = wd.load_state(exp, path, exp.eval.checkpoint_step)
  return evaluation_params(exp, path, state), step


def _other_params(network, what: str):
  """The EMA parameters of an OtherNetwork's checkpoint (run/experiment.py; -1: the
  latest), None for None; a step it does not keep is a one-line RunError."""
  if network is None:
    return None
  mngr = wd.manager(network.workdir, 1)
  step = network.checkpoint_step if network.checkpoint_step >= 0 else mngr.latest_step()
  if step not in mngr.all_steps():
    raise errors.RunError(f"the {what} of {network.where}: no readable checkpoint in "
                          f"{mngr.directory} at step {step}; it keeps {sorted(mngr.all_steps())}")
  logging.info("%s: %s at step %d", what, network.workdir, step)
  return wd.restore_part(network.workdir, step, "ema_params", network.abstract_params)


def weak_params(exp):
  """The autoguiding weak model's parameters (config.sampling.autoguidance: any network
  trained under this SDE), or None."""
  return _other_params(exp.weak, "weak model")


def teacher_params(exp):
  """Consistency distillation's teacher parameters (config.training.consistency), or
  None."""
  return _other_params(exp.teacher, "teacher")


def classifier_path(path: str) -> str:
  return os.path.join(path, "classifier", "params.msgpack")


def classifier_params(exp, path: str):
  """The trained classifier's parameters (run/classifier.py writes them)."""
  if not os.path.exists(classifier_path(path)):
    raise errors.RunError(
        f"no noise-conditional classifier at {classifier_path(path)} for "
        f"config.sampling.classifier_scale={exp.sampling.classifier_scale}; train one with "
        f"--mode train_classifier --workdir {path}")
  with open(classifier_path(path), "rb") as f:
    return jax.tree.map(jnp.asarray, flax.serialization.msgpack_restore(f.read()))

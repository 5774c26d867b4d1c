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


def weak_params(exp):
  """The autoguiding weak model's parameters: the EMA parameters of the checkpoint
  config.sampling.autoguidance.checkpoint_step (-1: the latest) in its workdir, which
  must hold a network of this config's shape; None when autoguidance is off."""
  a = exp.sampling.autoguidance
  if a is None:
    return None
  where = f"config.sampling.autoguidance.workdir={a.workdir!r}"
  if not os.path.isdir(os.path.join(a.workdir, "checkpoints")):
    raise errors.RunError(f"{where} holds no weak model (no checkpoints folder); train one "
                          "there with this config's network first")
  try:
    state, step = wd.load_state(exp, a.workdir,
                                None if a.checkpoint_step < 0 else a.checkpoint_step)
  except errors.RunError as e:
    raise errors.RunError(f"the weak model of {where}: {e}") from None
  logging.info("autoguidance: weak model %s at step %d, weight %g", a.workdir, step, a.weight)
  return state.ema_params


def teacher_params(exp):
  """Consistency distillation's teacher parameters: the EMA parameters of its checkpoint
  (run/experiment.Teacher); None for every other loss."""
  t = exp.teacher
  if t is None:
    return None
  mngr = wd.manager(t.workdir, 1)
  if t.checkpoint_step not in mngr.all_steps():
    raise errors.RunError(
        f"config.training.consistency.teacher_checkpoint_step={t.checkpoint_step}: "
        f"{t.workdir} keeps the checkpoints {sorted(mngr.all_steps())}")
  params = wd.restore_part(t.workdir, t.checkpoint_step, "ema_params", t.abstract_params)
  logging.info("consistency distillation: teacher %s at step %d", t.workdir, t.checkpoint_step)
  return params


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

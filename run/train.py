"""The training loop: resumes from the newest readable checkpoint, blocks on each step's
loss (it is logged, and it keeps multi-device collectives in step), stops on a
non-finite loss naming the step and the last good checkpoint, saves and stops on SIGTERM
(run.Preempted: rerun to resume). Checkpoints are written in the background while training
goes on; the run never returns or raises before the last one is committed."""
import contextlib
import math
import signal
import time
import types

from absl import logging
import jax
import jax.numpy as jnp

import run
from infra import mesh
from infra import metric_writer
from infra import weights
from infra import workdir as wd
from run import evaluate


def train(exp, workdir: str):
  """Trains to training.n_iters; returns the final state and the [(step, loss)] of this
  invocation. With training.eval_freq > 0, the held-out loss and a picture of one round
  of samples (EMA parameters) go to TensorBoard every eval_freq steps."""
  spec = exp.train
  with (wd.open_for_writing(workdir, exp.record) as changes, contextlib.closing(
      metric_writer.MetricWriter(workdir, to_disk=jax.process_index() == 0)) as writer):
    mngr = wd.manager(workdir, spec.snapshot_freq)
    teacher = weights.teacher_params(exp)
    state = wd.restore_or_init(mngr, exp.abstract_state, exp.record, changes,
                               lambda: _initial_state(exp, teacher))
    weak = weights.weak_params(exp) if spec.eval_freq else None
    train_key = jax.random.split(jax.random.PRNGKey(exp.seed + 1))[0]
    preemption = types.SimpleNamespace(requested=False)   # SIGTERM: save and stop
    signal.signal(signal.SIGTERM, lambda signum, frame: setattr(preemption, "requested", True))
    history, step = [], int(state.step)
    batches = exp.data.train_batches(step, spec.n_jitted_steps, spec.batch_size,
                                     exp.sharding(None, "data"), labels=exp.num_label_classes > 0)
    start_step, start_time = step, time.time()
    try:
      while step < spec.n_iters:
        state, metrics = exp.train_step(state, next(batches), train_key, teacher)
        loss = float(metrics["loss"])
        step += spec.n_jitted_steps
        if not math.isfinite(loss):
          raise run.Diverged(f"non-finite loss {loss} at step {step}; {wd.last_good(mngr)}")
        history.append((step, loss))
        try:
          _report(exp, workdir, writer, state, step, loss, start_step, start_time, weak)
        except OSError as e:
          raise run.WriteFailed(f"could not write {e.filename or workdir} at step {step}: "
                                f"{e.strerror or e}; {wd.last_good(mngr)}") from None
        if (step % spec.preemption_freq == 0 or step % spec.snapshot_freq == 0
            or step == spec.n_iters or preemption.requested):
          wd.save(mngr, state, exp.record)     # written while the next steps run
        if preemption.requested:
          raise run.Preempted(f"SIGTERM: saved the checkpoint of step {step} in "
                              f"{mngr.directory}; rerun the same command to resume")
    finally:     # no exit, SIGTERM or error included, before the last save is committed
      wd.finish(mngr, exp.record)
  return state, history


def _initial_state(exp, teacher):
  """The step-0 state; a distillation student that starts from its teacher (Song et al.,
  2023) takes copies of the teacher's parameters (the step donates the state's)."""
  state = exp.init_state(jax.random.PRNGKey(exp.seed))
  if teacher is None or not exp.train.init_student:
    return state
  params = jax.tree_util.tree_map(jnp.copy, teacher)
  return state.replace(params=params, ema_params=jax.tree_util.tree_map(jnp.copy, teacher))


def _report(exp, workdir, writer, state, step, loss, start_step, start_time, weak):
  """The step's log line, TensorBoard metrics (samples autoguided by the `weak`
  parameters if given) and post-hoc EMA snapshot, as due."""
  spec = exp.train
  if step % spec.log_freq == 0 or step == spec.n_iters:
    rate = (step - start_step) / max(time.time() - start_time, 1e-9)
    writer.write_scalars(step, {"loss": loss, "steps_per_sec": rate})
    logging.info("step %d/%d  loss %.5f  %.2f steps/s  ETA %s", step, spec.n_iters, loss,
                 rate, metric_writer.hms((spec.n_iters - step) / max(rate, 1e-9)))
  if spec.eval_freq and step % spec.eval_freq == 0:
    writer.write_scalars(step, {"eval_loss": evaluate.held_out_loss(exp, state.ema_params)})
    x, _ = exp.sample(state.ema_params, jax.random.PRNGKey(exp.seed + 30_000),
                      weak_params=weak)
    writer.write_image(step, "samples", exp.data.picture(mesh.to_host(x)))
  if spec.posthoc_sigma_rels and step % spec.posthoc_freq == 0:
    wd.save_ema_snapshot(workdir, step, spec.posthoc_sigma_rels,
                         state.opt_state[-1].averages)   # ema.track_power_emas's state


def train_eval(exp, workdir: str) -> dict:
  """--mode train_eval: `train`, then evaluate.report on the final state (evaluate.preflight
  first: a missing feature network or weak model stops the run before training)."""
  weak = evaluate.preflight(exp)
  return evaluate.report(exp, workdir, train(exp, workdir)[0], weak)

"""The training loop: resumes from the newest readable checkpoint, blocks on each step's
loss (it is logged, and it keeps multi-device collectives in step), stops on a
non-finite loss naming the step and the last good checkpoint, saves on SIGTERM."""
import math
import os
import signal
import time

from absl import logging
import jax

import metric_writer
import run
from run import checkpoints
from run import evaluate


class _Preemption:
  """Records SIGTERM so the loop can save and stop between steps."""

  def __init__(self):
    self.requested = False
    signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True


def _eta(seconds):
  seconds = int(seconds)
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def train(exp, workdir: str):
  """Trains to config.training.n_iters; returns the final state and the [(step, loss)]
  of this invocation. With training.eval_freq > 0, the held-out loss and a picture of
  one round of samples (EMA parameters) go to TensorBoard every eval_freq steps."""
  checkpoints.check_workdir(workdir)
  t, config = exp.config.training, exp.config
  mngr = checkpoints.manager(workdir, t)
  state, restored_step = checkpoints.restore_latest(mngr, exp.abstract_state())
  if state is None:
    state = exp.init_state(jax.random.PRNGKey(config.seed))
  else:
    logging.info("resumed from step %d", restored_step)
  writer = metric_writer.MetricWriter(workdir, to_disk=jax.process_index() == 0)
  train_key = jax.random.split(jax.random.PRNGKey(config.seed + 1))[0]
  preemption = _Preemption()
  history, step = [], int(state.step)
  batches = exp.task.train_batches(step, t.n_jitted_steps, t.batch_size,
                                   exp.sharding(None, "data"), labels=exp.num_label_classes > 0)
  start_step, start_time = step, time.time()
  while step < t.n_iters:
    state, metrics = exp.train_step(state, next(batches), train_key)
    loss = float(metrics["loss"])
    step += t.n_jitted_steps
    if not math.isfinite(loss):
      last = mngr.latest_step()
      where = f"{mngr.directory}/{last}" if last is not None else "none (no checkpoint yet)"
      raise run.RunError(f"non-finite loss {loss} at step {step}; last good checkpoint: {where}")
    history.append((step, loss))
    if step % t.log_freq == 0 or step == t.n_iters:
      rate = (step - start_step) / max(time.time() - start_time, 1e-9)
      writer.write_scalars(step, {"loss": loss, "steps_per_sec": rate})
      logging.info("step %d/%d  loss %.5f  %.2f steps/s  ETA %s", step, t.n_iters, loss, rate,
                   _eta((t.n_iters - step) / max(rate, 1e-9)))
    if t.eval_freq and step % t.eval_freq == 0:
      writer.write_scalars(step, {"eval_loss": evaluate.held_out_loss(exp, state.ema_params)})
      x, _ = exp.sample(state.ema_params, jax.random.PRNGKey(config.seed + 30_000))
      writer.write_image(step, "samples", exp.task.picture(evaluate.to_host(x)))
    posthoc = t.posthoc_ema
    if posthoc.sigma_rels and step % posthoc.snapshot_freq == 0 and jax.process_index() == 0:
      checkpoints.save_ema_snapshot(os.path.join(workdir, "ema_snapshots"), step,
                                    posthoc.sigma_rels, exp.posthoc_averages(state))
    if (step % t.snapshot_freq_for_preemption == 0 or step % t.snapshot_freq == 0
        or step == t.n_iters or preemption.requested):
      checkpoints.save(mngr, state)
    if preemption.requested:
      logging.warning("SIGTERM: saved the checkpoint of step %d in %s; stopping", step,
                      mngr.directory)
      break
  writer.close()
  mngr.wait_until_finished()
  return state, history

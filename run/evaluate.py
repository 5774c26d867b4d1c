"""Evaluation and sampling loops over an Experiment's compiled functions.

Samples are drawn in rounds of `sampling.batch_size`, each split over all devices of all
processes; round r uses the key fold_in(key, r), and JAX's random numbers do not depend
on how an array is sharded, so the samples are the same for any device count (up to the
float rounding of a different per-device batch). `sample` writes one file per round and
skips the rounds already written, so a killed run resumes without redoing them.
"""
import json
import math
import os

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

import metric_writer
import run
import sampling
from run import checkpoints
from run import classifier


def to_host(x) -> np.ndarray:
  """A global array as one numpy array on every process."""
  if jax.process_count() > 1:
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)


def _put(exp, x: np.ndarray) -> jax.Array:
  """Host data that every process holds whole -> a global array split along `data`."""
  return jax.make_array_from_callback(x.shape, exp.sharding("data"), lambda index: x[index])


def _save_atomically(path: str, **arrays):
  """np.savez to path via a temporary file: a killed run leaves no half-written file."""
  with open(path + ".tmp", "wb") as f:
    np.savez(f, **arrays)
  os.replace(path + ".tmp", path)


def _batched(fn, x: np.ndarray, batch_size: int, cache_prefix=None) -> np.ndarray:
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
    if path and jax.process_index() == 0:
      _save_atomically(path, output=outputs[-1])
  return np.concatenate(outputs)


def held_out_loss(exp, params) -> float:
  """The training loss (network in eval mode) over eval.num_loss_batches held-out batches."""
  e, held_out = exp.config.eval, exp.task.held_out
  key = jax.random.PRNGKey(exp.config.seed + 20_000)
  rows = np.arange(e.batch_size)

  def batch(i):
    index = (i * e.batch_size + rows) % len(held_out)
    x = _put(exp, held_out[index])
    return (x, _put(exp, exp.task.held_out_labels[index])) if exp.num_label_classes else x

  return float(np.mean([exp.eval_loss(params, batch(i), jax.random.fold_in(key, i))
                        for i in range(e.num_loss_batches)]))


def log_likelihood_fn(exp, params, cache_dir=None):
  """loglik(key, x [N, ...], tag=None) -> logp [N] nats, in eval.batch_size batches (one
  compile). With cache_dir and a tag, each batch's result is kept in
  cache_dir/<tag>_<batch>.npz, so a killed evaluation resumes at its last finished batch."""
  if cache_dir:
    os.makedirs(cache_dir, exist_ok=True)

  def loglik(key, x, tag=None):
    return _batched(lambda i, batch: to_host(exp.log_likelihood(
        params, jax.random.fold_in(key, i), _put(exp, np.asarray(batch, np.float32)))),
                    np.asarray(x), exp.config.eval.batch_size,
                    cache_dir and tag and os.path.join(cache_dir, tag))
  return loglik


def _claim(out_dir: str, settings: dict):
  """Records the sampling settings of out_dir's rounds in out_dir/settings.json; rounds
  drawn with other settings are a RunError (never silently mixed in)."""
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, "settings.json")
  text = json.dumps(settings, sort_keys=True, indent=1)
  if os.path.exists(path):
    with open(path) as f:
      if f.read() != text:
        raise run.RunError(f"{out_dir} holds samples drawn with other sampling settings (see "
                           "its settings.json); remove it to draw them anew")
  elif jax.process_index() == 0:
    with open(path + ".tmp", "w") as f:
      f.write(text)
    os.replace(path + ".tmp", path)


def generate(exp, params, key, num: int, out_dir=None, method=None, classifier_params=None,
             labels=None):
  """num samples [num, ...] and the NFE per sample, in rounds of sampling.batch_size,
  from sampler `method` (default: sampling.method; classifier_params for classifier
  guidance; labels [sampling.batch_size], the same in every round, replace
  sampling.class_label). With out_dir, round r is read from / written to
  out_dir/round_<r>.npz (the sampling settings, key and labels must match those the
  rounds were drawn with)."""
  rounds, nfe = [], 0
  method = method or exp.config.sampling.method
  sample = exp.samplers[method]
  if out_dir:
    # The general sampling settings and this sampler's own (not the other samplers').
    settings = {k: v for k, v in exp.config.sampling.to_dict().items()
                if k != "num_samples" and (k not in sampling.SAMPLERS or k == method)}
    claim = {"method": method, "key": np.asarray(key).tolist(), "sampling": settings,
             "labels": None if labels is None else np.asarray(labels).tolist()}
    if exp.config.eval.posthoc_sigma_rel:          # parameters other than the train state's EMA
      claim["posthoc_sigma_rel"] = exp.config.eval.posthoc_sigma_rel
    _claim(out_dir, claim)
  for r in range(math.ceil(num / exp.config.sampling.batch_size)):
    path = out_dir and os.path.join(out_dir, f"round_{r:05d}.npz")
    if path and os.path.exists(path):
      with np.load(path) as saved:
        x, nfe = saved["samples"], int(saved["nfe"])
    else:
      x, nfe = sample(params, jax.random.fold_in(key, r), classifier_params, labels)
      x, nfe = to_host(x), int(nfe)
      if path and jax.process_index() == 0:
        _save_atomically(path, samples=x, nfe=nfe, round=r)
    rounds.append(x)
  return np.concatenate(rounds)[:num], nfe


def evaluate_params(exp, params, step: int, out_dir=None):
  """Held-out loss, likelihood metrics and, for each sampler of eval.samplers, sample
  metrics of one set of parameters; returns (metrics, the first sampler's samples or
  None). Sample metrics are named "<sampler>/<metric>" when eval.samplers is set. With
  out_dir, likelihood batches are kept in out_dir/likelihood/ and each sampler's rounds
  in out_dir/samples/<sampler>/, so a killed evaluation resumes where it stopped."""
  e, metrics, first = exp.config.eval, {"step": step}, None
  if e.enable_loss:
    metrics["eval_loss"] = held_out_loss(exp, params)
  if e.enable_likelihood:
    metrics.update(exp.task.likelihood_metrics(
        log_likelihood_fn(exp, params, out_dir and os.path.join(out_dir, "likelihood")),
        exp.task.held_out[:e.likelihood_points], e.bpd_repeats))
  if e.enable_sampling:
    for method in exp.eval_sampler_names:
      prefix = f"{method}/" if e.samplers else ""
      x, nfe = generate(exp, params, jax.random.PRNGKey(exp.config.seed + 30_000),
                        exp.config.sampling.num_samples,
                        out_dir and os.path.join(out_dir, "samples", method), method)
      metrics[prefix + "nfe"] = nfe
      metrics.update({prefix + k: v for k, v in exp.task.sample_metrics(x).items()})
      first = x if first is None else first
  return metrics, first


def evaluate(exp, workdir: str) -> list:
  """Evaluates (EMA parameters) every kept snapshot not evaluated yet, and the latest
  checkpoint; appends to <workdir>/eval/metrics.jsonl. A killed evaluation resumes at the
  checkpoint it was on, and within it at its last finished likelihood batch and sampling
  round (kept in <workdir>/eval/step_<step>/)."""
  checkpoints.check_workdir(workdir)
  mngr = checkpoints.manager(workdir, exp.config.training)
  path = os.path.join(workdir, "eval", "metrics.jsonl")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  done = set()
  if os.path.exists(path):
    with open(path) as f:
      done = {json.loads(line)["step"] for line in f if line.strip()}
  writer = metric_writer.MetricWriter(os.path.dirname(path), to_disk=jax.process_index() == 0)
  results = []
  for step in sorted(mngr.all_steps()):
    if step in done or (step % exp.config.training.snapshot_freq and step != mngr.latest_step()):
      continue
    params = evaluation_params(exp, workdir, checkpoints.restore(mngr, exp.abstract_state(), step)[0])
    metrics, _ = evaluate_params(exp, params, step, os.path.join(workdir, "eval", f"step_{step}"))
    logging.info("eval step %d: %s", step, metrics)
    writer.write_scalars(step, {k: v for k, v in metrics.items()
                                if isinstance(v, (int, float)) and k != "step"})
    if jax.process_index() == 0:
      with open(path, "a") as f:
        f.write(json.dumps(metrics) + "\n")
    results.append(metrics)
  writer.close()
  return results


def evaluation_params(exp, workdir: str, state):
  """The parameters that are evaluated and sampled: the train state's EMA or, with
  eval.posthoc_sigma_rel > 0, the post-hoc EMA of that width at the state's step,
  rebuilt from <workdir>/ema_snapshots (its profile's relative residual is logged)."""
  sigma_rel = exp.config.eval.posthoc_sigma_rel
  if not sigma_rel:
    return state.ema_params
  params, residual = checkpoints.posthoc_ema(os.path.join(workdir, "ema_snapshots"), sigma_rel,
                                             int(state.step))
  logging.info("post-hoc EMA sigma_rel %g at step %d (profile residual %.2e)", sigma_rel,
               int(state.step), residual)
  return params


def sample(exp, workdir: str) -> str:
  """Writes sampling.num_samples samples of a checkpoint (eval.checkpoint_step, -1: the
  latest; EMA parameters, or the post-hoc EMA of eval.posthoc_sigma_rel) to
  <workdir>/samples/step_<step>/<method>[_class<c>...][_ema<sigma_rel>]/: one
  round_<r>.npz per round and samples.png. Returns that folder."""
  checkpoints.check_workdir(workdir)
  mngr = checkpoints.manager(workdir, exp.config.training)
  step = exp.config.eval.checkpoint_step
  state, step = checkpoints.restore(mngr, exp.abstract_state(), None if step < 0 else step)
  params, s = evaluation_params(exp, workdir, state), exp.config.sampling
  classifier_params = classifier.load(exp, workdir) if s.classifier_scale else None
  name = s.method + (f"_class{s.class_label}" if s.class_label >= 0 else "")
  name += (f"_w{s.guidance_scale:g}" if s.guidance_scale else "") + (
      f"_classifier{s.classifier_scale:g}" if s.classifier_scale else "")
  name += f"_ema{exp.config.eval.posthoc_sigma_rel:g}" if exp.config.eval.posthoc_sigma_rel else ""
  out_dir = os.path.join(workdir, "samples", f"step_{step}", name)
  x, nfe = generate(exp, params, jax.random.PRNGKey(exp.config.seed + 40_000), s.num_samples,
                    out_dir, classifier_params=classifier_params)
  if jax.process_index() == 0:
    exp.task.figure(os.path.join(out_dir, "samples.png"), x, log_likelihood_fn(exp, params))
  logging.info("wrote %d samples (NFE %d) to %s", len(x), nfe, out_dir)
  return out_dir


def report(exp, workdir: str, state) -> dict:
  """The train_eval outputs: <workdir>/metrics.json and <workdir>/report.png (2-D data:
  held-out data, samples, learned and true density; images: a grid of 64 samples)."""
  params = evaluation_params(exp, workdir, state)
  metrics, x = evaluate_params(exp, params, int(state.step))
  if x is None:
    x, _ = generate(exp, params, jax.random.PRNGKey(exp.config.seed + 30_000),
                    exp.config.sampling.num_samples)
  if jax.process_index() == 0:
    exp.task.figure(os.path.join(workdir, "report.png"), x, log_likelihood_fn(exp, params))
    with open(os.path.join(workdir, "metrics.json"), "w") as f:
      json.dump(metrics, f, indent=2)
  logging.info("metrics: %s", json.dumps(metrics))
  return metrics

"""Evaluation and sampling loops over an Experiment's compiled functions.

Samples are drawn in rounds of `sampling.batch_size`, each split over all devices of all
processes; round r uses the key fold_in(key, r), and JAX's random numbers do not depend
on how an array is sharded, so the samples are the same for any device count (up to the
float rounding of a different per-device batch). `sample` writes one file per round and
skips the rounds already written, so a killed run resumes without redoing them.
"""
import glob
import json
import math
import os

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

import run
from infra import metric_writer
from infra import workdir as wd
from run import classifier


def to_host(x) -> np.ndarray:
  """A global array as one numpy array on every process."""
  if jax.process_count() > 1:
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)


def _put(exp, x: np.ndarray) -> jax.Array:
  """Host data that every process holds whole -> a global array split along `data`."""
  return jax.make_array_from_callback(x.shape, exp.sharding("data"), lambda index: x[index])


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
    if path:
      wd.save_npz(path, output=outputs[-1])
  return np.concatenate(outputs)


def held_out_loss(exp, params) -> float:
  """The training loss (network in eval mode) over eval.num_loss_batches held-out batches."""
  e, held_out = exp.eval, exp.data.held_out
  key = jax.random.PRNGKey(exp.seed + 20_000)
  rows = np.arange(e.batch_size)

  def batch(i):
    index = (i * e.batch_size + rows) % len(held_out)
    x = _put(exp, held_out[index])
    return (x, _put(exp, exp.data.held_out_labels[index])) if exp.num_label_classes else x

  return float(np.mean([exp.eval_loss(params, batch(i), jax.random.fold_in(key, i))
                        for i in range(e.num_loss_batches)]))


def log_likelihood_fn(exp, params, cache_dir=None):
  """loglik(key, x [N, ...], tag=None) -> logp [N] nats, in eval.batch_size batches (one
  compile). With cache_dir and a tag, each batch's result is kept in
  cache_dir/<tag>_<batch>.npz, so a killed evaluation resumes at its last finished batch."""
  def loglik(key, x, tag=None):
    return _batched(lambda i, batch: to_host(exp.log_likelihood(
        params, jax.random.fold_in(key, i), _put(exp, np.asarray(batch, np.float32)))),
                    np.asarray(x), exp.eval.batch_size,
                    cache_dir and tag and os.path.join(cache_dir, tag))
  return loglik


def _claim(out_dir: str, settings: dict):
  """out_dir/settings.json records the settings of out_dir's rounds: rounds drawn with
  other settings are a RunError (never silently mixed in). Without rounds it blocks
  nothing (a run that failed before drawing one is simply redone)."""
  path = os.path.join(out_dir, "settings.json")
  text = json.dumps(settings, sort_keys=True, indent=1)
  if os.path.exists(path) and glob.glob(os.path.join(out_dir, "round_*.npz")):
    with open(path) as f:
      if f.read() != text:
        raise run.RunError(f"{out_dir} holds samples drawn with other sampling settings (see "
                           "its settings.json); remove it to draw them anew")
  elif jax.process_index() == 0:
    wd.write_or_fail(path, text.encode())


def generate(exp, params, key, num: int, out_dir=None, method=None, classifier_params=None,
             labels=None, weak_params=None):
  """num samples [num, ...] and the NFE per sample, in rounds of sampling.batch_size,
  from sampler `method` (default: sampling.method; classifier_params for classifier
  guidance; labels [sampling.batch_size], the same in every round, replace
  sampling.class_label; weak_params (`weak_params`) for autoguidance). With out_dir,
  round r is kept in out_dir/round_<r>.npz (the sampling settings, key and labels must
  match those the rounds were drawn with)."""
  rounds, nfe, method = [], 0, method or exp.sampling.method
  claim = {"method": method, "key": np.asarray(key).tolist(),
           "sampling": exp.sampling.settings[method],
           "labels": None if labels is None else np.asarray(labels).tolist()}
  if exp.eval.posthoc_sigma_rel:          # parameters other than the train state's EMA
    claim["posthoc_sigma_rel"] = exp.eval.posthoc_sigma_rel
  if out_dir:
    _claim(out_dir, claim)
  for r in range(math.ceil(num / exp.sampling.batch_size)):
    path = out_dir and os.path.join(out_dir, f"round_{r:05d}.npz")
    if path and os.path.exists(path):
      with np.load(path) as saved:
        x, nfe = saved["samples"], int(saved["nfe"])
    else:
      x, nfe = exp.samplers[method](params, jax.random.fold_in(key, r), classifier_params, labels,
                                    weak_params)
      x, nfe = to_host(x), int(nfe)
      if path:
        wd.save_npz(path, samples=x, nfe=nfe, round=r)
    rounds.append(x)
  return np.concatenate(rounds)[:num], nfe


def evaluate_params(exp, params, step: int, out_dir=None, weak_params=None):
  """Held-out loss, likelihood metrics and, for each sampler of eval.samplers, sample
  metrics (autoguided by weak_params if given) of one set of parameters; returns
  (metrics, the first sampler's samples or None). Sample metrics are named
  "<sampler>/<metric>" when eval.samplers is set. With out_dir, likelihood batches are
  kept in out_dir/likelihood/ and each sampler's rounds in out_dir/samples/<sampler>/,
  so a killed evaluation resumes where it stopped."""
  e, metrics, first = exp.eval, {"step": step}, None
  if e.enable_loss:
    metrics["eval_loss"] = held_out_loss(exp, params)
  if e.enable_likelihood:
    metrics.update(exp.data.likelihood_metrics(
        log_likelihood_fn(exp, params, out_dir and os.path.join(out_dir, "likelihood")),
        exp.data.held_out[:e.likelihood_points], e.bpd_repeats))
  if e.enable_sampling:
    for method in e.samplers:
      prefix = f"{method}/" if e.named_metrics else ""
      x, nfe = generate(exp, params, jax.random.PRNGKey(exp.seed + 30_000),
                        exp.sampling.num_samples,
                        out_dir and os.path.join(out_dir, "samples", method), method,
                        weak_params=weak_params)
      metrics[prefix + "nfe"] = nfe
      metrics.update({prefix + k: v for k, v in exp.data.sample_metrics(x).items()})
      first = x if first is None else first
  return metrics, first


def check_feature_net(exp):
  """The modes that compute sample features stop before writing if the network is missing."""
  if exp.eval.enable_sampling:
    exp.data.check_feature_net()


def evaluate(exp, workdir: str) -> list:
  """Evaluates (EMA parameters) every kept snapshot not evaluated yet, and the latest
  checkpoint; appends to <workdir>/eval/metrics.jsonl. A killed evaluation resumes at the
  checkpoint it was on, and within it at its last finished likelihood batch and sampling
  round (kept in <workdir>/eval/step_<step>/)."""
  check_feature_net(exp)
  with wd.open_for_writing(workdir, exp.record):
    mngr = wd.manager(workdir, exp.train.snapshot_freq)
    if not mngr.all_steps():
      raise run.RunError(f"no checkpoint in {mngr.directory} to evaluate; train first")
    path = os.path.join(workdir, "eval", "metrics.jsonl")
    done = set()
    if os.path.exists(path):
      with open(path) as f:
        done = {json.loads(line)["step"] for line in f if line.strip()}
    results, writer, weak = [], None, weak_params(exp)
    for step in sorted(mngr.all_steps()):
      if step in done or (step % exp.train.snapshot_freq and step != mngr.latest_step()):
        continue
      state, _ = wd.restore(mngr, exp.abstract_state, exp.record, step)
      metrics, _ = evaluate_params(exp, evaluation_params(exp, workdir, state), step,
                                   os.path.join(workdir, "eval", f"step_{step}"), weak)
      logging.info("eval step %d: %s", step, metrics)
      writer = writer or metric_writer.MetricWriter(os.path.dirname(path),
                                                    jax.process_index() == 0)
      writer.write_scalars(step, {k: v for k, v in metrics.items()
                                  if isinstance(v, (int, float)) and k != "step"})
      wd.append_line(path, json.dumps(metrics))
      results.append(metrics)
    if writer:
      writer.close()
  return results


def evaluation_params(exp, workdir: str, state):
  """The parameters that are evaluated and sampled: the train state's EMA or, with
  eval.posthoc_sigma_rel > 0, the post-hoc EMA of that width at the state's step,
  rebuilt from <workdir>/ema_snapshots (its profile's relative residual is logged)."""
  sigma_rel = exp.eval.posthoc_sigma_rel
  if not sigma_rel:
    return state.ema_params
  params, residual = wd.posthoc_ema(workdir, sigma_rel, int(state.step))
  logging.info("post-hoc EMA sigma_rel %g at step %d (profile residual %.2e)", sigma_rel,
               int(state.step), residual)
  return params


def weak_params(exp):
  """The autoguiding weak model's parameters: the EMA parameters of the checkpoint
  config.sampling.autoguidance.checkpoint_step (-1: the latest) in its workdir, which
  must hold a network of this config's shape; None when autoguidance is off. A missing
  or different model is a one-line RunError naming the setting."""
  a = exp.sampling.autoguidance
  if a is None:
    return None
  where = f"config.sampling.autoguidance.workdir={a.workdir!r}"
  if not os.path.isdir(os.path.join(a.workdir, "checkpoints")):
    raise run.RunError(f"{where} holds no weak model (no checkpoints folder); train one there "
                       "with this config's network first")
  try:
    state, step = wd.load_state(exp, a.workdir,
                                None if a.checkpoint_step < 0 else a.checkpoint_step)
  except run.RunError as e:
    raise run.RunError(f"the weak model of {where}: {e}") from None
  logging.info("autoguidance: weak model %s at step %d, weight %g", a.workdir, step, a.weight)
  return state.ema_params


def restore_params(exp, workdir: str):
  """(evaluation parameters, step) of eval.checkpoint_step (None: the latest)."""
  state, step = wd.load_state(exp, workdir, exp.eval.checkpoint_step)
  return evaluation_params(exp, workdir, state), step


def sample(exp, workdir: str) -> str:
  """Writes sampling.num_samples samples of a checkpoint (eval.checkpoint_step, -1: the
  latest; EMA parameters, or the post-hoc EMA of eval.posthoc_sigma_rel) to
  <workdir>/samples/step_<step>/<method>[_class<c>...][_ema<sigma_rel>]/: one
  round_<r>.npz per round, all samples in one file for external evaluators (images:
  samples_uint8.npz in ADM's format; points: samples.npz) and samples.png. Returns that
  folder."""
  with wd.open_for_writing(workdir, exp.record):
    params, step = restore_params(exp, workdir)
    classifier_params = classifier.load(exp, workdir) if exp.sampling.classifier_scale else None
    weak = weak_params(exp)
    out_dir = os.path.join(workdir, "samples", f"step_{step}", exp.sampling.folder)
    x, nfe = generate(exp, params, jax.random.PRNGKey(exp.seed + 40_000),
                      exp.sampling.num_samples, out_dir, classifier_params=classifier_params,
                      weak_params=weak)
    name, samples = exp.data.export(x)
    wd.save_npz(os.path.join(out_dir, name), arr_0=samples)
    if jax.process_index() == 0:
      exp.data.figure(os.path.join(out_dir, "samples.png"), x, log_likelihood_fn(exp, params))
  logging.info("wrote %d samples (NFE %d) to %s", len(x), nfe, out_dir)
  return out_dir


def report(exp, workdir: str, state, weak=None) -> dict:
  """The train_eval outputs: <workdir>/metrics.json and <workdir>/report.png (2-D data:
  held-out data, samples, learned and true density; images: a grid of 64 samples);
  samples autoguided by `weak` (`weak_params`) if given."""
  with wd.open_for_writing(workdir, exp.record):
    params = evaluation_params(exp, workdir, state)
    metrics, x = evaluate_params(exp, params, int(state.step), weak_params=weak)
    if x is None:
      x, _ = generate(exp, params, jax.random.PRNGKey(exp.seed + 30_000),
                      exp.sampling.num_samples, weak_params=weak)
    if jax.process_index() == 0:
      exp.data.figure(os.path.join(workdir, "report.png"), x, log_likelihood_fn(exp, params))
      wd.write_or_fail(os.path.join(workdir, "metrics.json"),
                       json.dumps(metrics, indent=2).encode())
  logging.info("metrics: %s", json.dumps(metrics))
  return metrics

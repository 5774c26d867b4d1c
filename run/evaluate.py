"""Evaluation and sampling loops over an Experiment's compiled functions.

Samples are drawn in rounds of `sampling.batch_size`, each split over all devices of all
processes; round r uses the key fold_in(key, r), and JAX's random numbers do not depend
on how an array is sharded, so the samples are the same for any device count (up to the
float rounding of a different per-device batch). `sample` writes one file per round and
skips the rounds already written, so a killed run resumes without redoing them.
"""
import contextlib
import json
import math
import os

from absl import logging
import jax
import numpy as np

import run
from infra import mesh
from infra import metric_writer
from infra import resumable
from infra import weights
from infra import workdir as wd


def held_out_loss(exp, params) -> float:
  """The training loss (network in eval mode) over eval.num_loss_batches held-out batches."""
  e, held_out, split = exp.eval, exp.data.held_out, exp.sharding("data")
  key = jax.random.PRNGKey(exp.seed + 20_000)
  rows = np.arange(e.batch_size)

  def batch(i):
    index = (i * e.batch_size + rows) % len(held_out)
    x = mesh.put(held_out[index], split)
    return (x, mesh.put(exp.data.held_out_labels[index], split)) if exp.num_label_classes else x

  return float(np.mean([exp.eval_loss(params, batch(i), jax.random.fold_in(key, i))
                        for i in range(e.num_loss_batches)]))


def log_likelihood_fn(exp, params, cache_dir=None):
  """loglik(key, x [N, ...], tag=None) -> logp [N] nats, in eval.batch_size batches (one
  compile). With cache_dir and a tag, each batch's result is kept in
  cache_dir/<tag>_<batch>.npz, so a killed evaluation resumes at its last finished batch."""
  def loglik(key, x, tag=None):
    return resumable.batched(lambda i, batch: mesh.to_host(exp.log_likelihood(
        params, jax.random.fold_in(key, i),
        mesh.put(np.asarray(batch, np.float32), exp.sharding("data")))),
        np.asarray(x), exp.eval.batch_size, cache_dir and tag and os.path.join(cache_dir, tag))
  return loglik


def generate(exp, params, key, num: int, out_dir=None, method=None, classifier_params=None,
             labels=None, weak_params=None):
  """num samples [num, ...] and the NFE per sample, in rounds of sampling.batch_size,
  from sampler `method` (default: sampling.method; classifier_params for classifier
  guidance; labels [sampling.batch_size], the same in every round, replace
  sampling.class_label; weak_params (infra/weights.weak_params) for autoguidance). With
  out_dir, round r is kept in out_dir/round_<r>.npz (the sampling settings, key and
  labels must match those the rounds were drawn with: infra/resumable.claim)."""
  method = method or exp.sampling.method
  claim = {"method": method, "key": np.asarray(key).tolist(),
           "sampling": exp.sampling.settings[method],
           "labels": None if labels is None else np.asarray(labels).tolist()}
  if exp.eval.posthoc_sigma_rel:          # parameters other than the train state's EMA
    claim["posthoc_sigma_rel"] = exp.eval.posthoc_sigma_rel
  if out_dir:
    resumable.claim(out_dir, claim)

  def draw(r):
    x, nfe = exp.samplers[method](params, jax.random.fold_in(key, r), classifier_params,
                                  labels, weak_params)
    return mesh.to_host(x), int(nfe)

  rounds, nfe = resumable.rounds(draw, math.ceil(num / exp.sampling.batch_size), out_dir)
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


def preflight(exp):
  """What stops an evaluation before it writes anything: a missing feature network (when
  sample metrics need one) or weak model. Returns the weak model's parameters or None."""
  if exp.eval.enable_sampling:
    exp.data.check_feature_net()
  return weights.weak_params(exp)


def evaluate(exp, workdir: str) -> list:
  """Evaluates (EMA parameters) every kept snapshot not evaluated yet, and the latest
  checkpoint; appends to <workdir>/eval/metrics.jsonl. A killed evaluation resumes at the
  checkpoint it was on, and within it at its last finished likelihood batch and sampling
  round (kept in <workdir>/eval/step_<step>/)."""
  weak = preflight(exp)
  with wd.open_for_writing(workdir, exp.record):
    mngr = wd.manager(workdir, exp.train.snapshot_freq)
    if not mngr.all_steps():
      raise run.RunError(f"no checkpoint in {mngr.directory} to evaluate; train first")
    path = os.path.join(workdir, "eval", "metrics.jsonl")
    done, results = wd.logged_steps(path), []
    with contextlib.closing(metric_writer.MetricWriter(os.path.dirname(path),
                                                       jax.process_index() == 0)) as writer:
      for step in sorted(mngr.all_steps()):
        if step in done or (step % exp.train.snapshot_freq and step != mngr.latest_step()):
          continue
        state, _ = wd.restore(mngr, exp.abstract_state, exp.record, step)
        metrics, _ = evaluate_params(exp, weights.evaluation_params(exp, workdir, state), step,
                                     os.path.join(workdir, "eval", f"step_{step}"), weak)
        logging.info("eval step %d: %s", step, metrics)
        writer.write_scalars(step, {k: v for k, v in metrics.items()
                                    if isinstance(v, (int, float)) and k != "step"})
        wd.append_line(path, json.dumps(metrics))
        results.append(metrics)
  return results


def sample(exp, workdir: str) -> str:
  """Writes sampling.num_samples samples of a checkpoint (eval.checkpoint_step, -1: the
  latest; EMA parameters, or the post-hoc EMA of eval.posthoc_sigma_rel) to
  <workdir>/samples/step_<step>/<method>[_class<c>...][_ema<sigma_rel>]/: one
  round_<r>.npz per round, all samples in one file for external evaluators (images:
  samples_uint8.npz in ADM's format; points: samples.npz) and samples.png. Returns that
  folder."""
  with wd.open_for_writing(workdir, exp.record):
    params, step = weights.restore_params(exp, workdir)
    clf = weights.classifier_params(exp, workdir) if exp.sampling.classifier_scale else None
    weak = weights.weak_params(exp)
    out_dir = os.path.join(workdir, "samples", f"step_{step}", exp.sampling.folder)
    x, nfe = generate(exp, params, jax.random.PRNGKey(exp.seed + 40_000),
                      exp.sampling.num_samples, out_dir, classifier_params=clf,
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
  samples autoguided by `weak` (infra/weights.weak_params) if given."""
  with wd.open_for_writing(workdir, exp.record):
    params = weights.evaluation_params(exp, workdir, state)
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

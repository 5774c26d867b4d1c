r"""Song et al. (2021) Tables 2-3 in miniature, with its rankings resolved or said to be
unresolved: the CPU Fashion-MNIST network trained under the VP, VE and sub-VP SDEs, EDM's
process (with its loss) and rectified flow (flow matching), same budget; three training
seeds of each ranked process (VP and rectified flow by default), one of each --unranked
one (shown, never ranked); bits/dim (probability-flow ODE) and, per sampler, FID / KID /
precision / recall of the Fashion-MNIST feature network on the project's FID protocol
(uint8 samples against the training split).

Two standard errors are reported per cell: over sampling seeds of one network (the
yardstick: the first process's training seed 0, drawn with --sampling_seeds seeds; every
other network with --run_sampling_seeds) and over training seeds (the one a ranking of
processes needs; it holds the sampling noise too). A ranking is stated only where the gap
exceeds twice its standard error; the page's sentences are computed from the numbers
(`conclusions`). Each FID is also taken on the float protocol (the same samples, not
rounded to uint8), and the difference given.

  python -m experiments.fashion_mnist_table [--processes vp,rf] [--train_seeds 3] [--train_only]

Needs the prepared dataset and the trained feature network (`make feature-net`). Trains
every missing run (about 25 min each on 2 quiet cores), then scores it: per network about
27 min for the bits/dim of 1000 images and, per 2,000 samples, about 22 min of PC (500
NFE), 4 min of DDIM (100 steps) and a few of the others, as measured on run B; the default
9 networks take about 13 h. Everything resumes: runs in <runs_root>/<process>_seed<s>/,
samples and likelihood batches under each run's table/ folder. Writes
<outdir>/fashion_mnist_table.{md,png}. --quick: a tiny network, two steps, VP only, one
training seed, 16 samples: checks that the script runs, nothing more
(tests/test_experiments.py checks the statistics on hand-made cells).
"""
import dataclasses
import json
import os
import time

from absl import app
from absl import flags
from absl import logging
import jax
import matplotlib.pyplot as plt
import numpy as np

from configs.fashion_mnist import edm_ddpm_cpu
from configs.fashion_mnist import rf_ddpm_cpu
from configs.fashion_mnist import subvp_ddpm_cpu
from configs.fashion_mnist import ve_ddpm_cpu
from configs.fashion_mnist import vp_ddpm_cpu
from experiments import common
from infra import workdir as run_workdir
from run import build
from run import evaluate
from run import train

flags.DEFINE_list("processes", ["vp", "ve", "subvp", "edm", "rf"], "Processes to train and score.")
flags.DEFINE_list("samplers", ["pc", "ode", "ddim", "dpm_solver_2m", "edm_heun"],
                  "Samplers to score.")
flags.DEFINE_integer("train_seeds", 3, "Training seeds per ranked process (config.seed 0, 1, ...).")
flags.DEFINE_list("unranked", ["ve", "subvp", "edm"],
                  "Processes trained with one seed: in the table, never ranked.")
flags.DEFINE_integer("run_sampling_seeds", 1,
                     "Sampling seeds of every network but the yardstick (the first process's "
                     "training seed 0, which gets --sampling_seeds).")
flags.DEFINE_integer("bpd_images", 1000, "Test images for bits/dim (one dequantization each).")
flags.DEFINE_string("runs_root", "runs/fashion_mnist_table", "Where the trained runs live.")
flags.DEFINE_bool("train_only", False, "Train every missing run, then stop (score later).")
FLAGS = common.FLAGS

CONFIGS = {"vp": vp_ddpm_cpu, "ve": ve_ddpm_cpu, "subvp": subvp_ddpm_cpu, "edm": edm_ddpm_cpu,
           "rf": rf_ddpm_cpu}
SAMPLERS = {"pc": "PC (reverse diffusion + Langevin)", "ode": "ODE (Dopri5, rtol 1e-3)",
            "ddim": "DDIM eta 1", "dpm_solver_2m": "DPM-Solver++(2M)", "edm_heun": "EDM Heun"}
QUICK_SAMPLERS = ("ddim", "dpm_solver_2m")
METRICS = ("fid", "kid", "precision", "recall")


def table_config(process: str, seed: int):
  """The process's CPU config (its training budget) with the table's evaluation settings."""
  config = CONFIGS[process].get_config()
  config.seed = seed
  config.data.data_dir = FLAGS.data_dir
  e, s = config.eval, config.sampling
  e.feature_net, e.fid_protocol, e.fid_reference = "auto", "uint8", "train"
  e.samplers = QUICK_SAMPLERS if FLAGS.quick else tuple(FLAGS.samplers)
  e.enable_loss, e.enable_sampling = False, False
  e.likelihood_points, e.batch_size = FLAGS.bpd_images, 128
  s.num_samples, s.batch_size = FLAGS.num_samples, min(200, FLAGS.num_samples)
  s.pc.predictor, s.pc.corrector, s.pc.num_steps = "reverse_diffusion", "langevin", 250
  s.ode.rtol = s.ode.atol = 1e-3
  s.ode.denoise = True
  s.dpm_solver_2m.num_steps, s.edm_heun.num_steps = 20, 18
  if FLAGS.quick:
    m, t = config.model, config.training
    m.nf, m.num_groups, m.ch_mult, m.attn_resolutions = 8, 4, (1, 2), (14,)
    t.batch_size, t.n_iters, t.snapshot_freq, t.snapshot_freq_for_preemption = 16, 2, 2, 2
    e.fid_reference_size, e.likelihood.rtol, e.likelihood.atol = 64, 1e-2, 1e-2
    s.ddim.num_steps, s.dpm_solver_2m.num_steps, s.batch_size = 5, 3, 16
  return config


def _add_seconds(clock: str, seconds: float) -> float:
  """Adds `seconds` to the total in the clock file (created if missing); the new total."""
  if os.path.exists(clock):
    with open(clock) as f:
      seconds += json.load(f)["seconds"]
  run_workdir.write_or_fail(clock, json.dumps({"seconds": seconds}).encode())
  return seconds


def trained_run(process: str, seed: int):
  """(Experiment, EMA parameters, its table folder, training seconds summed over the
  invocations) of the run, trained here if missing."""
  exp = build.build(table_config(process, seed))
  workdir = os.path.join(FLAGS.runs_root, f"{process}_seed{seed}")
  clock = os.path.join(workdir, "train_seconds.json")    # summed over invocations
  start = time.time()
  try:
    train.train(exp, workdir)
  except BaseException:    # an interrupted or preempted (SIGTERM) invocation counts too
    try:
      _add_seconds(clock, time.time() - start)
    except Exception as e:  # pylint: disable=broad-except  (never hide why training stopped)
      logging.warning("could not add the training time to %s: %s", clock, e)
    raise
  seconds = _add_seconds(clock, time.time() - start)
  state, step = run_workdir.load_state(exp, workdir)
  return exp, state.ema_params, os.path.join(workdir, "table", f"step_{step}"), seconds


def score_run(exp, params, out_dir: str, samplers, sampling_seeds: int) -> dict:
  """{"bits_per_dim", "sigma_eps", (sampler, metric): [sampling_seeds]} of one network;
  metric "fid_float" is the FID of the same samples on the float protocol, "fid_rounding"
  the paired difference fid - fid_float."""
  eps = exp.record["eval"]["likelihood"]["eps"]
  scores, _ = evaluate.evaluate_params(exp, params, 0, out_dir)
  scores["sigma_eps"] = float(exp.sde.marginal(np.float32(eps))[1])
  float_data = dataclasses.replace(exp.data, fid_protocol="float")
  for sampler in samplers:
    for k in range(sampling_seeds):
      key = jax.random.PRNGKey(common.FASHION_MNIST_KEY + k)
      x, nfe = evaluate.generate(exp, params, key, FLAGS.num_samples,
                                 os.path.join(out_dir, f"{sampler}_seed{k}"), sampler)
      metrics = exp.data.sample_metrics(x)
      metrics["fid_float"] = float_data.sample_metrics(x)["fid"]
      metrics["fid_rounding"] = metrics["fid"] - metrics["fid_float"]
      scores[sampler, "nfe"] = nfe
      for name in (*METRICS, "fid_float", "fid_rounding"):
        scores.setdefault((sampler, name), []).append(metrics[name])
  scores["protocol"] = metrics["fid_protocol"]
  return scores


def cell(runs: list, sampler: str, metric: str) -> dict:
  """Mean over training seeds of each network's mean over its sampling seeds; "se_train":
  the SE of that mean from the spread between training seeds (nan with one seed);
  "se_sample": the SE over sampling seeds of one network's mean, pooled over the networks
  drawn with several (nan if none was)."""
  per_seed = [np.asarray(run[sampler, metric], np.float64) for run in runs]
  per_network = np.array([v.mean() for v in per_seed])
  several = [v.var(ddof=1) / len(v) for v in per_seed if len(v) > 1]
  s = len(per_network)
  return {"mean": float(per_network.mean()), "per_network": per_network,
          "se_train": float(per_network.std(ddof=1) / np.sqrt(s)) if s > 1 else float("nan"),
          "se_sample": float(np.sqrt(np.mean(several))) if several else float("nan")}


def _pm(mean: float, se: float, fmt: str = ".2f") -> str:
  """"mean ± se", or just the mean where there is no SE (one seed)."""
  return f"{mean:{fmt}} ± {se:{fmt}}" if np.isfinite(se) else f"{mean:{fmt}}"


def _resolved(gap: float, se: float) -> bool:
  return bool(np.isfinite(se) and gap > 2.0 * se)


def conclusions(fid: dict) -> list:
  """Sentences computed from fid[process][sampler] = cell(...): per sampler, among the
  processes with several training seeds, whether the lowest-FID one beats every other by
  more than twice the SE of the gap (training seeds, unpaired), the others named as not
  ranked; per process with several networks, whether its best sampler beats every other by
  more than twice the SE of the paired per-network gap."""
  lines = []
  processes = list(fid)
  for sampler in fid[processes[0]]:
    ranked = [p for p in processes if np.isfinite(fid[p][sampler]["se_train"])]
    if len(ranked) < 2:
      continue
    order = sorted(ranked, key=lambda p: fid[p][sampler]["mean"])
    best, unresolved = order[0], []
    for other in order[1:]:
      a, b = fid[best][sampler], fid[other][sampler]
      gap, se = b["mean"] - a["mean"], float(np.hypot(a["se_train"], b["se_train"]))
      if not _resolved(gap, se):
        unresolved.append(f"{other} ({_pm(gap, se)})")
    verdict = ("resolved: every gap exceeds twice its SE" if not unresolved else
               "not resolved against " + ", ".join(unresolved))
    others = [p for p in processes if p not in ranked]
    lines.append(f"{SAMPLERS[sampler]}: lowest FID {best}; {verdict}." + (
        f" Not ranked (one training seed): {', '.join(others)}." if others else ""))
  for process in processes:
    cells = fid[process]
    order = sorted(cells, key=lambda m: cells[m]["mean"])
    best, unresolved = order[0], []
    if len(order) < 2 or len(cells[best]["per_network"]) < 2:
      continue
    for other in order[1:]:
      diff = cells[other]["per_network"] - cells[best]["per_network"]
      se = diff.std(ddof=1) / np.sqrt(len(diff))
      if not _resolved(float(diff.mean()), float(se)):
        unresolved.append(f"{other} ({_pm(float(diff.mean()), float(se))})")
    verdict = ("resolved against every other sampler" if not unresolved else
               "not resolved against " + ", ".join(unresolved))
    lines.append(f"{process}: lowest FID with {best}; {verdict} (paired over training seeds).")
  return lines


def _table(results: dict, samplers) -> str:
  rows = []
  for process, runs in results.items():
    bpd = np.array([run["bits_per_dim"] for run in runs])
    for i, sampler in enumerate(samplers):
      c = {m: cell(runs, sampler, m) for m in (*METRICS, "fid_rounding")}
      first = i == 0
      rows.append([
          process if first else "", f"{runs[0]['sigma_eps']:.1e}" if first else "",
          _pm(bpd.mean(), bpd.std(ddof=1) / np.sqrt(len(bpd)) if len(bpd) > 1 else np.nan,
              ".3f") if first else "",
          SAMPLERS[sampler], runs[0][sampler, "nfe"],
          _pm(c["fid"]["mean"], c["fid"]["se_train"]) + (
              f" [{c['fid']['se_sample']:.2f}]" if np.isfinite(c["fid"]["se_sample"]) else ""),
          _pm(c["kid"]["mean"], c["kid"]["se_train"]),
          f"{c['precision']['mean']:.3f}", f"{c['recall']['mean']:.3f}",
          f"{c['fid_rounding']['mean']:+.3f}" + (
              f" [{c['fid_rounding']['se_sample']:.3f}]"
              if np.isfinite(c["fid_rounding"]["se_sample"]) else "")])
  return common.markdown_table(
      ["process", "σ(ε)", "bits/dim", "sampler", "NFE", "FID ± SE train [SE sampling]",
       "KID ± SE", "precision", "recall", "FID uint8 − float [SE sampling]"], rows)


def check_ready():
  """Before anything is trained (run_all calls it first): the feature network is there."""
  common.require_feature_net("fashion_mnist_table")


def main(_):
  check_ready()
  for name, given, valid in (("processes", FLAGS.processes, CONFIGS),
                             ("unranked", FLAGS.unranked, CONFIGS),
                             ("samplers", FLAGS.samplers, SAMPLERS)):
    if set(given) - set(valid):
      raise app.UsageError(f"--{name} {sorted(set(given) - set(valid))}: valid choices are "
                           f"{sorted(valid)}")
  processes = ("vp",) if FLAGS.quick else FLAGS.processes
  samplers = QUICK_SAMPLERS if FLAGS.quick else tuple(FLAGS.samplers)
  if FLAGS.quick:
    FLAGS.num_samples, FLAGS.bpd_images, FLAGS.sampling_seeds = 16, 4, 2
  results, train_seconds, train_seconds_here, start = {}, 0.0, 0.0, time.time()
  for process in processes:
    results[process] = []
    seeds = 1 if FLAGS.quick or process in FLAGS.unranked else FLAGS.train_seeds
    for seed in range(seeds):
      began = time.time()
      exp, params, out_dir, seconds = trained_run(process, seed)
      train_seconds += seconds
      train_seconds_here += time.time() - began
      if FLAGS.train_only:
        continue
      yardstick = process == processes[0] and seed == 0
      results[process].append(score_run(
          exp, params, out_dir, samplers,
          FLAGS.sampling_seeds if yardstick else FLAGS.run_sampling_seeds))
  if FLAGS.train_only:
    print(f"trained: every run of {', '.join(processes)} under {FLAGS.runs_root}")
    return
  fid = {p: {m: cell(runs, m, "fid") for m in samplers} for p, runs in results.items()}
  first = results[processes[0]][0]
  setup = (
      f"FID protocol: {first['protocol']}; {FLAGS.num_samples} samples per sampling seed; "
      f"{processes[0]}'s training seed 0 (the yardstick) {FLAGS.sampling_seeds} sampling "
      f"seeds, every other network {FLAGS.run_sampling_seeds}; training seeds: "
      + ", ".join(f"{p} {len(r)}" for p, r in results.items()) + ". FID: the mean over "
      "training seeds of each network's mean ± its SE from their spread (which holds the "
      "sampling noise too) [the SE over sampling seeds of one network]; KID ± its SE over "
      "training seeds. bits/dim: "
      f"{FLAGS.bpd_images} test images, mean ± SE over training seeds. The processes stop "
      "at different σ(ε) (column), which smooths the data by different amounts: their "
      "bits/dim are not compared here. Last column: the FID of the samples rounded to uint8 "
      "minus that of the same samples scored as floats, paired per sampling seed [its SE "
      f"over sampling seeds]. Wall time on this machine: training {train_seconds / 3600:.2f} "
      f"h (summed over the invocations that trained, interrupted ones included; one killed "
      "outright, SIGKILL, is not counted), scoring "
      f"{(time.time() - start - train_seconds_here) / 3600:.2f} h."
      "\n\n" + "\n".join(f"- {line}" for line in conclusions(fid)))
  figure = _figure(results, fid, samplers)
  common.write_outputs("fashion_mnist_table", "Song et al. Tables 2-3 on Fashion-MNIST "
                       "(CPU budget)", setup, _table(results, samplers), figure)


def _figure(results, fid, samplers):
  """FID per process and sampler, with twice the SE over training seeds."""
  fig, ax = plt.subplots(figsize=(1.4 + 1.2 * len(samplers) * len(results) / 3, 3.2))
  width = 0.8 / len(results)
  for j, process in enumerate(results):
    means = [fid[process][m]["mean"] for m in samplers]
    ax.bar(np.arange(len(samplers)) + j * width, means, width, label=process,
           yerr=[np.nan_to_num(fid[process][m]["se_train"]) * 2 for m in samplers], capsize=2)
  ax.set_xticks(np.arange(len(samplers)) + 0.4 - width / 2, samplers, fontsize=8)
  ax.set_ylabel("FID (± 2 SE over training seeds)")
  ax.legend(fontsize=7)
  return fig


if __name__ == "__main__":
  app.run(main)

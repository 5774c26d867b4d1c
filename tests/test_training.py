"""The training system end to end: every config runs, kills and resumes are exact,
1 and 4 devices agree, two processes train together, bad input fails in one line."""
import glob
import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import datasets
import run
from configs import default_toy
from infra import workdir as run_workdir
from run import build
from run import evaluate
from run import train as run_train
from tests import stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "toy", "vp_gmm.py")
TINY = ["--config.model.hidden=32", "--config.training.batch_size=64",
        "--config.training.log_freq=10", "--config.data.num_eval=256",
        "--config.eval.likelihood_points=64", "--config.sampling.num_samples=256",
        "--config.sampling.batch_size=256", "--config.eval.batch_size=64"]


def shrink(config, n_iters=20):
  """A config of the same kind at a size that runs in seconds."""
  t = config.training
  t.n_jitted_steps, t.n_iters, t.batch_size = 5, n_iters, 64
  t.log_freq = t.snapshot_freq = t.snapshot_freq_for_preemption = 10
  config.model.hidden = 32
  config.data.num_eval = 256
  config.eval.likelihood_points = 64
  config.eval.num_loss_batches = 2
  config.eval.batch_size = 64
  config.sampling.num_samples = config.sampling.batch_size = 256
  config.sde.num_scales = min(config.sde.num_scales, 50)
  return config


def load_config(path):
  spec = importlib.util.spec_from_file_location("experiment_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def run_main(workdir, *flags, env=None, check=True):
  cmd = [sys.executable, os.path.join(ROOT, "main.py"), f"--config={CONFIG}",
         f"--workdir={workdir}", *TINY, *flags]
  result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
  if check:
    assert result.returncode == 0, result.stderr[-3000:]
  return result


def train(config, workdir):
  return run_train.train(build.build(config), str(workdir))


def final_params(workdir, config):
  state, step = run_workdir.load_state(build.build(config), workdir)
  return step, jax.tree_util.tree_leaves(jax.device_get(state))


CONFIG_FILES = sorted(glob.glob(os.path.join(ROOT, "configs", "**", "*.py"), recursive=True))
CONFIG_FILES = [p for p in CONFIG_FILES if "get_config" in open(p).read()
                and os.path.join("configs", "toy") in p]   # image configs: test_configs.py


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_config_builds_and_trains_a_tiny_step(path, tmp_path):
  config = shrink(load_config(path), n_iters=5)
  if config.training.loss == "consistency_distillation":     # a tiny teacher first
    train(shrink(load_config(CONFIG), n_iters=5), tmp_path / "teacher")
    c = config.training.consistency
    c.teacher_workdir, c.teacher_checkpoint_step = str(tmp_path / "teacher"), 5
  state, history = train(config, tmp_path / "run")
  assert int(state.step) == 5 and np.isfinite(history[-1][1])


@pytest.mark.slow        # ~24 s for both: keeps `make test` under 10 minutes
@pytest.mark.parametrize("objective", ["ism", "ssm"])
def test_kernel_free_objectives_train_a_tiny_run(objective, tmp_path):
  """training.objective through build: the loss the Experiment evaluates is the kernel-free
  one, DSM's minus D = 2 (losses.Objective; paired over 16 keys at the initial parameters),
  and it trains."""
  config = shrink(default_toy.get_default_configs(), n_iters=5)
  dsm = build.build(config)
  config.training.objective = objective
  exp = build.build(config)
  params = exp.init_state(jax.random.PRNGKey(0)).params
  x0 = datasets.gaussian_mixture().sample(jax.random.PRNGKey(1), 4096)
  gaps = [float(dsm.eval_loss(params, x0, k)) - float(exp.eval_loss(params, x0, k))
          for k in jax.random.split(jax.random.PRNGKey(2), 16)]
  stats.assert_mean_close(gaps, 2.0, what=objective)
  state, history = run_train.train(exp, str(tmp_path))
  assert int(state.step) == 5 and np.isfinite(history[-1][1])


@pytest.mark.slow        # ~30 s: keeps `make test` under 10 minutes
def test_resume_after_sigkill_is_bit_identical(tmp_path):
  flags = ["--mode=train", "--config.training.n_iters=300", "--config.training.n_jitted_steps=1",
           "--config.training.snapshot_freq_for_preemption=50",
           "--config.training.snapshot_freq=150"]
  reference = tmp_path / "reference"
  run_main(reference, *flags)
  interrupted = tmp_path / "interrupted"
  cmd = [sys.executable, os.path.join(ROOT, "main.py"), f"--config={CONFIG}",
         f"--workdir={interrupted}", *TINY, *flags]
  process = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while not (interrupted / "checkpoints" / "100").exists():   # then kill at whatever step
    assert process.poll() is None and time.time() < deadline, "run ended before the kill"
    time.sleep(0.05)
  process.send_signal(signal.SIGKILL)
  process.wait()
  run_main(interrupted, *flags)
  config = load_config(CONFIG)
  config.model.hidden = 32
  step_ref, leaves_ref = final_params(str(reference), config)
  step_res, leaves_res = final_params(str(interrupted), config)
  assert step_ref == step_res == 300
  # Bit-identical: per-step keys are fold_in(key, step), the data of step s is a
  # function of s, and XLA on CPU is deterministic for the same program.
  for a, b in zip(leaves_ref, leaves_res):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow        # ~11 s; the default tier keeps SIGTERM in test_workdir.py
def test_sigterm_saves_and_stops(tmp_path):
  cmd = [sys.executable, os.path.join(ROOT, "main.py"), f"--config={CONFIG}",
         f"--workdir={tmp_path}", *TINY, "--mode=train", "--config.training.n_iters=100000",
         "--config.training.n_jitted_steps=1", "--config.training.snapshot_freq_for_preemption=50000",
         "--config.training.snapshot_freq=50000"]
  process = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 300
  while not glob.glob(str(tmp_path / "events.out.tfevents.*")):   # the loop has started
    assert process.poll() is None and time.time() < deadline
    time.sleep(0.1)
  time.sleep(1.0)
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == 75, stderr[-2000:]        # run.Preempted: resumable
  assert stderr.strip().splitlines()[-1].startswith("stopped: SIGTERM: saved the checkpoint of step")
  steps = [int(p) for p in os.listdir(tmp_path / "checkpoints") if p.isdigit()]
  assert len(steps) == 1 and 0 < steps[0] < 100000


def _losses_on(n_devices, workdir):
  code = ("import json; from tests.test_training import shrink, train; "
          "from configs import default_toy; "
          "c = shrink(default_toy.get_default_configs(), n_iters=30); "
          "c.training.snapshot_freq = c.training.snapshot_freq_for_preemption = 30; "
          f"s, h = train(c, {str(workdir)!r}); print(json.dumps(h))")
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n_devices}")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return np.array(json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
def test_one_and_four_devices_give_the_same_loss_trajectory(tmp_path):
  one = _losses_on(1, tmp_path / "one")
  four = _losses_on(4, tmp_path / "four")
  np.testing.assert_array_equal(one[:, 0], four[:, 0])
  # Same global batch and keys; only the order of the cross-device sums differs.
  np.testing.assert_allclose(one[:, 1], four[:, 1], rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("model_axis_size", [1, 2])
def test_two_processes_train_and_write_one_checkpoint(model_axis_size, tmp_path):
  """With model axis 2, each process holds 2 devices, one 'model' group (4 in all)."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  flags = ["--mode=train", "--config.training.n_iters=20", "--config.training.n_jitted_steps=5",
           "--config.training.snapshot_freq_for_preemption=20", "--config.training.snapshot_freq=20",
           f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
           f"--config.training.model_axis_size={model_axis_size}"]
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={model_axis_size}")
  cmds = [[sys.executable, os.path.join(ROOT, "main.py"), f"--config={CONFIG}",
           f"--workdir={tmp_path}", *TINY, *flags, f"--process_id={i}"] for i in range(2)]
  processes = [subprocess.Popen(c, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env) for c in cmds]
  outputs = [p.communicate(timeout=300) for p in processes]
  for p, (_, err) in zip(processes, outputs):
    assert p.returncode == 0, err[-3000:]
  assert "process 0/2" in outputs[0][1] and "process 1/2" in outputs[1][1]
  assert f"{2 * model_axis_size} global devices" in outputs[0][1]
  assert sorted(p for p in os.listdir(tmp_path / "checkpoints") if p.isdigit()) == ["20"]


@pytest.mark.parametrize("flag, expected", [
    ("--config.sde.name=vpsd", ["'vpsd'", "vpsde", "subvpsde"]),
    ("--config.training.batch_size=abc", ["abc"]),
    ("--config.sampling.ddim.etta=1", ["unknown config key", "'etta'", '"eta"']),
])
def test_bad_input_exits_non_zero_with_one_line(flag, expected, tmp_path):
  result = run_main(tmp_path / "run", "--mode=train", flag, check=False)
  assert result.returncode != 0
  last_lines = result.stderr.strip().splitlines()[-2:]     # absl adds a "see --help" line
  assert any(all(word in line for word in expected) for line in last_lines), result.stderr[-1500:]
  assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("section, key, value, expected", [
    ("model", "name", "unet", ["'unet'", "mlp"]),
    ("sampling.pc", "predictor", "ancestral", ["'ancestral'", "ancestral_sampling"]),
    ("sampling.pc", "corrector", "hmc", ["'hmc'", "langevin"]),
    ("sampling", "method", "heun", ["'heun'", "edm_heun"]),
    ("data", "dataset", "spirals", ["'spirals'", "checkerboard"]),
    ("training", "loss", "sliced", ["'sliced'", "continuous"]),
    ("model", "parameterization", "velocity", ["'velocity'", "noise"]),
    ("eval.likelihood", "hutchinson_type", "sobol", ["'sobol'", "rademacher"]),
    ("model", "hiden", 64, ["config.model.hiden", "'hidden'"]),
    ("sampling.ddim", "etta", 1.0, ["config.sampling.ddim.etta", "'eta'"]),
    ("training", "continuouse", True, ["config.training.continuouse"]),
    ("training", "log_freq", 7, ["log_freq=7", "n_jitted_steps=10"]),
    ("model", "ema_sigma_rel", 0.3, ["sigma_rel=0.3", "(0, 0.2887)"]),
    ("eval", "posthoc_sigma_rel", 0.5, ["sigma_rel=0.5", "(0, 0.2887)"]),
    ("training.posthoc_ema", "sigma_rels", (0.05,), ["posthoc_ema.snapshot_freq=0", "> 0"]),
    ("training", "objective", "sliced", ["config.training.objective='sliced'", "'ssm'"]),
    ("training", "trace_estimator", "sobol", ["config.training.trace_estimator='sobol'",
                                               "'hutchinson'"]),
    ("training", "n_projections", 0, ["config.training.n_projections=0", ">= 1"]),
    ("optim", "schedule", "linear", ["config.optim.schedule='linear'",
                                     "['constant', 'cosine', 'inverse_sqrt']"]),
    ("optim", "t_ref", 0, ["config.optim.t_ref=0", "> 0"]),
    ("training", "accumulation_steps", 3, ["config.training.batch_size=512",
                                           "config.training.accumulation_steps=3", "= 3"]),
    ("training", "model_axis_size", 2, ["config.training.model_axis_size=2", "the 1 devices"]),
])
def test_bad_names_fail_before_anything_runs(section, key, value, expected, tmp_path):
  """main.py prints RunError messages as its one-line error (see the test above)."""
  config = default_toy.get_default_configs()
  parent = config
  for part in section.split("."):
    parent = parent[part]
  parent[key] = value
  with pytest.raises(run.RunError) as error:
    train(config, tmp_path)
  assert "\n" not in str(error.value)
  for word in expected:
    assert word in str(error.value)
  assert not (tmp_path / "checkpoints").exists()


def test_unwritable_workdir_fails_in_one_line(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  with pytest.raises(run.RunError, match="workdir .*a_file/run.* is not writable"):
    train(default_toy.get_default_configs(), blocker / "run")


@pytest.mark.slow        # ~11 s: keeps `make test` under 10 minutes
def test_corrupted_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
  config = shrink(default_toy.get_default_configs(), n_iters=20)
  train(config, tmp_path)
  latest = tmp_path / "checkpoints" / "20"
  for path in glob.glob(str(latest / "**" / "*"), recursive=True):
    if os.path.isfile(path):
      with open(path, "wb") as f:
        f.write(b"garbage")
  config.training.n_iters = 30
  with caplog.at_level(logging.INFO):
    state, history = train(config, tmp_path)
  messages = "\n".join(r.getMessage() for r in caplog.records)
  assert "step 20" in messages and "unreadable" in messages and "falling back" in messages
  assert "resumed from step 10" in messages
  assert history[0][0] == 15 and int(state.step) == 30     # redoes 10 -> 20, nothing lost
  assert (tmp_path / "checkpoints" / "30").exists()


def test_non_finite_loss_stops_with_the_step_and_last_checkpoint(tmp_path):
  config = shrink(default_toy.get_default_configs(), n_iters=200)
  config.optim.lr, config.optim.warmup = 1e30, 0
  with pytest.raises(run.RunError) as error:
    train(config, tmp_path)
  message = str(error.value)
  assert "non-finite loss" in message and "at step" in message and "last good checkpoint" in message
  assert "\n" not in message


@pytest.mark.slow        # ~22 s: keeps `make test` under 10 minutes
def test_eval_and_sample_modes(tmp_path):
  config = shrink(default_toy.get_default_configs(), n_iters=20)
  exp = build.build(config)
  run_train.train(exp, str(tmp_path))
  first = evaluate.evaluate(exp, str(tmp_path))
  assert [m["step"] for m in first] == [10, 20] and all(np.isfinite(m["nll"]) for m in first)
  assert evaluate.evaluate(exp, str(tmp_path)) == []        # resumable: nothing left to do
  out_dir = evaluate.sample(exp, str(tmp_path))
  assert np.load(os.path.join(out_dir, "round_00000.npz"))["samples"].shape == (256, 2)
  assert os.path.exists(os.path.join(out_dir, "samples.png"))
  config.sampling.ddim.eta = 0.5             # another sampler's settings do not matter
  assert evaluate.sample(build.build(config), str(tmp_path)) == out_dir
  config.sampling.pc.snr = 0.2               # rounds of other settings are never mixed in
  with pytest.raises(run.RunError, match="other sampling settings"):
    evaluate.generate(build.build(config), None, jax.random.PRNGKey(config.seed + 40_000), 256,
                      out_dir)


def _train_toy_vp(tmp_path, objective="dsm", batch_size=512):
  """The toy VP run (configs/toy/vp_gmm.py) for 3000 steps: its held-out metrics."""
  config = default_toy.get_default_configs()
  config.training.n_iters = 3000
  config.training.objective = objective
  config.training.batch_size = batch_size
  config.model.ema_rate = 0.99
  config.training.snapshot_freq = config.training.snapshot_freq_for_preemption = 3000
  config.sampling.num_samples = config.sampling.batch_size = 2000
  exp = build.build(config)
  state, _ = run_train.train(exp, str(tmp_path))
  return evaluate.evaluate_params(exp, state.ema_params, 3000)[0], config.sampling.num_samples


@pytest.mark.slow
def test_trained_model_reaches_the_mixture_entropy(tmp_path):
  """3000 steps (~40 s on 2 CPU cores): held-out NLL within 0.05 nats of the true
  mixture's (the paired gap estimates KL(p || model) >= 0), samples recover the weights."""
  metrics, n = _train_toy_vp(tmp_path)
  assert -stats.Z * metrics["nll_gap_se"] < metrics["nll_gap"] < 0.05, metrics
  for w, w_true in zip(metrics["weights"], metrics["true_weights"]):
    assert abs(w - w_true) < stats.Z * np.sqrt(w_true * (1 - w_true) / n), metrics


@pytest.mark.slow
def test_sliced_score_matching_at_every_noise_level_reaches_the_mixture_entropy(tmp_path):
  """The same run with training.objective="ssm" (kernel-free: no z / sigma target in the
  loss): held-out NLL within 0.05 nats of the mixture's, sample weights within 0.03.

  At batch 2048 (measured, one seed: NLL gap 0.027 +- 0.005, weights within 0.004). At
  the DSM test's batch 512 the gap was 0.078 after 3000 steps and 0.052 after 6000 (DSM:
  0.015 after 3000; exact-trace ISM 0.044): same expected gradient, but far noisier per
  example where t is large (docs/results/kernel_free_objectives.md). 650 s measured with
  other jobs sharing the 2 CPU cores (4x the DSM test's examples, a JVP each)."""
  metrics, _ = _train_toy_vp(tmp_path, objective="ssm", batch_size=2048)
  assert -stats.Z * metrics["nll_gap_se"] < metrics["nll_gap"] < 0.05, metrics
  for w, w_true in zip(metrics["weights"], metrics["true_weights"]):
    assert abs(w - w_true) < 0.03, metrics


_MODEL_AXIS_RUN = """
import json, sys
import jax, numpy as np
from configs import default_toy
from run import build
from tests.test_training import shrink

def run(model_axis_size):
  config = shrink(default_toy.get_default_configs(), n_iters=10)
  config.training.model_axis_size = model_axis_size
  config.training.posthoc_ema = dict(sigma_rels=(0.05,), snapshot_freq=10)
  exp = build.build(config)
  state = exp.init_state(jax.random.PRNGKey(0))
  batches = exp.data.train_batches(0, 5, 64, exp.sharding(None, "data"))
  for _ in range(2):
    state, metrics = exp.train_step(state, next(batches), jax.random.PRNGKey(1), None)
  x, _ = exp.sample(state.ema_params, jax.random.PRNGKey(2))
  return state, np.asarray(x)

(plain, x_plain), (sharded, x_sharded) = run(1), run(2)
split = []
for a, b in zip(jax.tree_util.tree_leaves(plain), jax.tree_util.tree_leaves(sharded)):
  np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)
  assert a.sharding.is_fully_replicated
  if "model" in b.sharding.spec:
    axis = list(b.sharding.spec).index("model")
    assert all(s.data.shape[axis] == b.shape[axis] // 2 for s in b.addressable_shards)
    split.append(b.size)
np.testing.assert_allclose(x_sharded, x_plain, rtol=1e-4, atol=1e-4)
posthoc = jax.tree_util.tree_leaves(sharded.opt_state[-1].averages)   # ema.track_power_emas
assert sum("model" in a.sharding.spec for a in posthoc) == 8
print(json.dumps([len(jax.tree_util.tree_leaves(sharded)), len(split), sum(split),
                  sum(l.size for l in jax.tree_util.tree_leaves(sharded))]))
"""


@pytest.mark.slow
def test_model_axis_two_on_four_devices_equals_the_replicated_run():
  """training.model_axis_size=2 on 4 devices: a (2, 2) mesh whose train state (params, Adam
  moments, EMA, a post-hoc EMA) is split along 'model' by infra/mesh.py's rule; 10 steps and one round of
  samples equal the replicated run's up to float summation order, and the large arrays
  really are split (each device holds half of each such axis)."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
  result = subprocess.run([sys.executable, "-c", _MODEL_AXIS_RUN], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  n_leaves, n_split, split_size, total_size = json.loads(result.stdout.strip().splitlines()[-1])
  # The toy MLP's 8 32 x 32 kernels (in params, Adam's mu and nu, EMA, post-hoc EMA) are
  # split; its biases, the 2-wide input/output kernels and the step counts are not.
  assert n_split == 5 * 8 and split_size > 0.8 * total_size, (n_leaves, n_split, split_size,
                                                              total_size)


@pytest.mark.slow
def test_a_sharded_accumulating_run_resumes_on_four_then_two_then_one_device(tmp_path):
  """From the command line: a run on 4 devices with model axis 2 and accumulation 2 is
  stopped at step 10 (its workdir with checkpoint 10 only), resumed on the same mesh to
  20, then on 2 devices with neither to 30, then on 1 device to 40 (Orbax restores each
  checkpoint into the new mesh's shardings). On the same mesh the resumed state equals
  the uninterrupted run's bit for bit; on the others, up to float summation order."""
  flags = ["--mode=train", "--config.training.n_jitted_steps=5",
           "--config.training.snapshot_freq=10",
           "--config.training.snapshot_freq_for_preemption=10"]
  sharded = ["--config.training.model_axis_size=2", "--config.training.accumulation_steps=2"]
  devices = lambda n: dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
  reference, resumed = tmp_path / "reference", tmp_path / "resumed"
  run_main(reference, *flags, *sharded, "--config.training.n_iters=40", env=devices(4))
  shutil.copytree(reference, resumed)
  for step in ("20", "30", "40"):         # as if stopped after saving step 10
    shutil.rmtree(resumed / "checkpoints" / step)
  for n_devices, mesh_flags, n_iters in ((4, sharded, 20), (2, [], 30), (1, [], 40)):
    result = run_main(resumed, *flags, *mesh_flags, f"--config.training.n_iters={n_iters}",
                      env=devices(n_devices))
    assert f"resumed from step {n_iters - 10}" in result.stderr, result.stderr[-2000:]
  config = load_config(CONFIG)
  config.model.hidden = 32
  exp = build.build(config)
  leaves = lambda workdir, step: jax.tree_util.tree_leaves(jax.device_get(
      run_workdir.load_state(exp, str(workdir), step)[0]))
  for a, b in zip(leaves(resumed, 20), leaves(reference, 20)):
    np.testing.assert_array_equal(a, b)
  for step in (30, 40):
    for a, b in zip(leaves(resumed, step), leaves(reference, step)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

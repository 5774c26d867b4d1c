"""The Experiment built once: strict config files, one compilation per function across
checkpoints, resumable and device-independent sampling rounds, time labels that do not
depend on N or the number of sampling steps."""
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sampling
import sde_lib
from configs import default_toy
from models import parameterizations
from run import build
from run import evaluate
from run import train
from tests.test_training import ROOT, shrink


def test_a_misspelt_key_in_a_config_file_stops_the_run_in_one_line(tmp_path):
  config_file = tmp_path / "typo.py"
  config_file.write_text("from configs.toy import vp_gmm\n\n\ndef get_config():\n"
                         "  config = vp_gmm.get_config()\n  config.model.hiden = 64\n"
                         "  return config\n")
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, "main.py"), f"--config={config_file}",
       f"--workdir={tmp_path / 'run'}", "--mode=train"],
      capture_output=True, text=True, cwd=ROOT, timeout=300)
  assert result.returncode != 0
  last = result.stderr.strip().splitlines()[-1]
  assert "config.model.hiden" in last and "'hidden'" in last, result.stderr[-1500:]
  assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow        # ~16 s: keeps `make test` under 10 minutes
def test_evaluating_three_checkpoints_compiles_each_function_once(tmp_path):
  config = shrink(default_toy.get_default_configs(), n_iters=30)
  config.eval.likelihood_points = 100            # two likelihood batches of 64, one padded
  exp = build.build(config)
  train.train(exp, str(tmp_path))
  results = evaluate.evaluate(exp, str(tmp_path))
  assert [m["step"] for m in results] == [10, 20, 30]
  for fn in (exp.sample, exp.log_likelihood, exp.eval_loss):
    assert fn._cache_size() == 1      # pylint: disable=protected-access



def test_initial_state_is_compiled_once_and_equals_the_usual_compilation():
  """init_state is compiled without XLA's backend optimizations on the CPU (build.py): its
  values equal those of the same function compiled as usual up to rounding (the toy MLP's
  differ in 5% of the entries by one float32 rounding step, 3e-7 relative)."""
  exp = build.build(shrink(default_toy.get_default_configs(), n_iters=10))
  optimized = jax.jit(exp.init_state.__wrapped__)
  for seed in (3, 4):
    state, expected = exp.init_state(jax.random.PRNGKey(seed)), optimized(jax.random.PRNGKey(seed))
    assert jax.tree_util.tree_structure(state) == jax.tree_util.tree_structure(expected)
    for got, want in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(expected)):
      np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
  assert exp.init_state._cache_size() == 1     # pylint: disable=protected-access

def _sample_command(workdir, *flags):
  return [sys.executable, os.path.join(ROOT, "main.py"),
          f"--config={os.path.join(ROOT, 'configs', 'toy', 'vp_gmm.py')}", f"--workdir={workdir}",
          "--mode=sample", "--config.model.hidden=32", "--config.sampling.batch_size=64",
          "--config.sampling.num_samples=19200", "--config.sampling.pc.num_steps=100",
          "--config.sde.num_scales=50", *flags]


def _rounds(workdir):
  folder = os.path.join(workdir, "samples", "step_10", "pc")
  return sorted(f for f in os.listdir(folder) if f.startswith("round_") and f.endswith(".npz"))


def _load(workdir, name):
  with np.load(os.path.join(workdir, "samples", "step_10", "pc", name)) as f:
    return f["samples"]


@pytest.mark.slow
def test_sampling_resumes_after_a_kill_and_does_not_depend_on_the_device_count(tmp_path):
  config = shrink(default_toy.get_default_configs(), n_iters=10)
  config.sde.num_scales = 50
  train.train(build.build(config), str(tmp_path / "reference"))
  for name in ("killed", "two_devices"):
    shutil.copytree(tmp_path / "reference", tmp_path / name)

  subprocess.run(_sample_command(tmp_path / "reference"), check=True, cwd=ROOT, timeout=600,
                 capture_output=True)
  process = subprocess.Popen(_sample_command(tmp_path / "killed"), cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  folder = tmp_path / "killed" / "samples" / "step_10" / "pc"
  deadline = time.time() + 300
  while not (folder / "round_00001.npz").exists():      # two rounds written
    assert process.poll() is None and time.time() < deadline, "run ended before the kill"
    time.sleep(0.01)
  process.send_signal(signal.SIGKILL)
  process.wait()
  done = _rounds(tmp_path / "killed")
  assert 2 <= len(done) < 300
  written = {name: os.stat(folder / name).st_mtime_ns for name in done}
  subprocess.run(_sample_command(tmp_path / "killed"), check=True, cwd=ROOT, timeout=600,
                 capture_output=True)
  assert {n: os.stat(folder / n).st_mtime_ns for n in done} == written   # not redone
  assert _rounds(tmp_path / "killed") == _rounds(tmp_path / "reference")
  for name in _rounds(tmp_path / "reference"):
    np.testing.assert_array_equal(_load(tmp_path / "killed", name),
                                  _load(tmp_path / "reference", name))

  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  subprocess.run(_sample_command(tmp_path / "two_devices", "--config.sampling.num_samples=640"),
                 check=True, cwd=ROOT, timeout=600, capture_output=True, env=env)
  assert len(_rounds(tmp_path / "two_devices")) == 10
  for name in _rounds(tmp_path / "two_devices"):
    # Same keys, same random numbers; per-device batches of 32 instead of 64 may round
    # the network's float32 sums differently.
    np.testing.assert_allclose(_load(tmp_path / "two_devices", name),
                               _load(tmp_path / "reference", name), rtol=1e-4, atol=1e-4)


def test_time_labels_are_the_trained_ones_whatever_n_or_the_step_count():
  """P2000 on a model trained with N = 1000: the network sees 999 t, as in training."""
  seen = []

  def apply_fn(params, x, c_noise):
    del params
    jax.debug.callback(lambda c: seen.append(np.asarray(c)), c_noise)
    return jnp.zeros_like(x)

  t = jnp.linspace(1e-3, 1.0, 7)
  labels = {}
  for n in (1000, 2000):
    sde = sde_lib.VPSDE(N=n)
    score_fn = parameterizations.get_score_fn(apply_fn, None, sde, noise_conditioning="time")
    jax.block_until_ready(score_fn(jnp.zeros((7, 2)), t))
    labels[n] = seen.pop()
  np.testing.assert_allclose(labels[2000], labels[1000], rtol=1e-6)
  np.testing.assert_allclose(labels[1000], 999.0 * np.asarray(t), rtol=1e-6)

  sde = sde_lib.VPSDE(N=2000)
  score_fn = parameterizations.get_score_fn(apply_fn, None, sde, noise_conditioning="time")
  sampler = sampling.get_pc_sampler(sde, (3, 2), "euler_maruyama", "none", num_steps=2000)
  _, nfe = sampler(jax.random.PRNGKey(0), score_fn)
  jax.effects_barrier()
  steps = np.stack(seen)[:, 0]
  assert nfe == 2000 and len(steps) == 2000
  np.testing.assert_allclose(steps.max(), 999.0, rtol=1e-6)      # t = T
  np.testing.assert_allclose(steps, 999.0 * np.linspace(1.0, 1e-3, 2000), atol=1e-3)


def test_evaluation_during_training_writes_loss_and_a_sample_picture(tmp_path):
  from tensorboard.backend.event_processing import event_file_loader  # pylint: disable=g-import-not-at-top
  config = shrink(default_toy.get_default_configs(), n_iters=20)
  config.training.eval_freq = 10
  train.train(build.build(config), str(tmp_path))
  events = [e for path in tmp_path.glob("events.out.tfevents.*")
            for e in event_file_loader.EventFileLoader(str(path)).Load()]
  # The loader migrates summaries to tensors, with the plugin named in the metadata.
  tags = [(e.step, v.tag, v.metadata.plugin_data.plugin_name)
          for e in events for v in e.summary.value]
  for step in (10, 20):
    assert (step, "eval_loss", "scalars") in tags
    assert (step, "samples", "images") in tags

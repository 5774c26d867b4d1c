"""A workdir is one run's, through the real command line: bad input fails in one line
before anything is written, another config's checkpoints are never trained over or
read, one writer at a time, a full disk loses nothing, and the exit codes say which."""
import dataclasses
import errno
import glob
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import run
from configs import default_toy
from infra import workdir as run_workdir
from run import build
from run import train as run_train
from tests.test_training import CONFIG, ROOT, TINY, run_main, shrink, train

TRAIN = ["--mode=train", "--config.training.n_iters=10", "--config.training.n_jitted_steps=5",
         "--config.training.snapshot_freq=10", "--config.training.snapshot_freq_for_preemption=10"]


def _digest(workdir) -> dict:
  """{relative path: sha256} of every file under workdir (the lock file aside)."""
  digests = {}
  for path in sorted(glob.glob(os.path.join(workdir, "**", "*"), recursive=True)):
    if os.path.isfile(path) and os.path.basename(path) != ".lock":
      with open(path, "rb") as f:
        digests[os.path.relpath(path, workdir)] = hashlib.sha256(f.read()).hexdigest()
  return digests


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A toy workdir trained to step 10 through main.py."""
  workdir = tmp_path_factory.mktemp("trained") / "run"
  run_main(workdir, *TRAIN)
  return workdir


def _fails_in_one_line(result, exit_code, *words):
  assert result.returncode == exit_code, (result.returncode, result.stderr[-2000:])
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: "), result.stderr[-2000:]
  for word in words:
    assert word in last, last


BAD_INPUTS = [
    (["--mode=sample", "--config.sampling.pc.num_steps=0"], "config.sampling.pc.num_steps=0"),
    (["--mode=sample", "--config.sampling.num_samples=0"], "config.sampling.num_samples=0"),
    (["--mode=sample", "--config.sampling.batch_size=0"], "config.sampling.batch_size=0"),
    (["--mode=sample", "--config.sampling.method=ddim", "--config.sampling.ddim.num_steps=0"],
     "config.sampling.ddim.num_steps=0"),
    (["--mode=train", "--config.training.snapshot_freq=0"], "config.training.snapshot_freq=0"),
    (["--mode=train", "--config.optim.lr=-1"], "config.optim.lr=-1"),
    (["--mode=train", "--config.training.n_iters=-5"], "config.training.n_iters=-5"),
    (["--mode=eval", "--config.eval.batch_size=0"], "config.eval.batch_size=0"),
    (["--mode=eval", "--config.eval.posthoc_sigma_rel=0.3"], "config.eval.posthoc_sigma_rel=0.3"),
    (["--mode=train", "--config.model.ema_rate=1.5"], "config.model.ema_rate=1.5"),
    (["--mode=inpaint"], "--mode inpaint needs image data"),
]


@pytest.mark.parametrize("flags, words", BAD_INPUTS,
                         ids=lambda v: v[-1] if isinstance(v, list) else None)
def test_bad_input_fails_in_one_line_and_leaves_the_workdir_unchanged(flags, words, trained):
  before = _digest(trained)
  _fails_in_one_line(run_main(trained, *flags, check=False), 2, words)
  assert _digest(trained) == before


@pytest.mark.parametrize("config_text, words", [
    (None, "No such file"), ("def get_config(:\n", "invalid syntax"),
    ("def get_config():\n  return 1 / 0\n", "division by zero")])
def test_a_missing_or_broken_config_file_is_one_line(config_text, words, tmp_path):
  path = tmp_path / "config.py"
  if config_text is not None:
    path.write_text(config_text)
  result = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), f"--config={path}",
                           f"--workdir={tmp_path / 'run'}"], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
  _fails_in_one_line(result, 2, words)
  assert not (tmp_path / "run").exists()


def test_modes_that_read_a_checkpoint_say_train_first(tmp_path):
  for mode in ("eval", "sample"):
    _fails_in_one_line(run_main(tmp_path / "empty", f"--mode={mode}", check=False), 2,
                       "train first")
  assert not (tmp_path / "empty" / "checkpoints").exists() or not os.listdir(
      tmp_path / "empty" / "checkpoints")


def test_help_says_how_overrides_work_and_exits_zero():
  result = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), "--help"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "--config.<section>.<key>=value" in result.stdout
  assert "configs/default_toy.py" in result.stdout and "Exit codes" in result.stdout


@pytest.mark.parametrize("mode", ["train", "eval", "sample"])
def test_another_configs_checkpoints_are_refused_not_restarted(mode, trained, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(trained, workdir)
  before = _digest(workdir)
  result = run_main(workdir, *TRAIN, f"--mode={mode}", "--config.model.hidden=16",
                    "--config.training.n_iters=20", check=False)
  _fails_in_one_line(result, 3, "holds another train state", "(32,)", "(16,)",
                     "model.hidden (32 -> 16)", "another --workdir")
  assert "corrupt" not in result.stderr and "unreadable" not in result.stderr
  assert _digest(workdir) == before
  assert sorted(os.listdir(workdir / "checkpoints")) == ["10"]


def test_a_changed_config_that_keeps_the_train_state_resumes(trained, tmp_path):
  """Settings outside the train state (here the learning rate and n_iters) resume, with
  the change logged; the recorded config stays the one the run began with."""
  workdir = tmp_path / "run"
  shutil.copytree(trained, workdir)
  recorded = (workdir / "config.json").read_text()
  result = run_main(workdir, *TRAIN, "--config.training.n_iters=20", "--config.optim.lr=1e-3")
  assert "resumed from step 10" in result.stderr
  assert "optim.lr 0.002 -> 0.001" in result.stderr
  assert sorted(os.listdir(workdir / "checkpoints")) == ["10", "20"]
  assert (workdir / "config.json").read_text() == recorded


def _start_long_training(workdir):
  cmd = [sys.executable, os.path.join(ROOT, "main.py"), f"--config={CONFIG}",
         f"--workdir={workdir}", *TINY, "--mode=train", "--config.training.n_iters=1000000",
         "--config.training.n_jitted_steps=10", "--config.training.snapshot_freq=1000000",
         "--config.training.snapshot_freq_for_preemption=100"]
  log = workdir.parent / "first.log"     # a file, not a pipe that nobody drains
  with open(log, "w") as stderr:
    process = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
  deadline = time.time() + 300
  while not (workdir / "checkpoints" / "100").exists():
    assert process.poll() is None and time.time() < deadline, log.read_text()[-2000:]
    time.sleep(0.05)
  return process


@pytest.mark.slow        # ~35 s: keeps `make test` under 10 minutes
def test_one_writer_per_workdir_and_a_killed_writer_leaves_no_lock(tmp_path):
  workdir = tmp_path / "run"
  first = _start_long_training(workdir)
  try:
    for mode in ("train", "sample"):
      result = run_main(workdir, f"--mode={mode}", "--config.training.n_iters=1000000",
                        "--config.training.n_jitted_steps=10", check=False)
      _fails_in_one_line(result, 4, "is in use by", f"pid {first.pid}")
    assert first.poll() is None                     # unaffected: still training
    latest = max(int(s) for s in os.listdir(workdir / "checkpoints") if s.isdigit())
    deadline = time.time() + 300
    while not (workdir / "checkpoints" / str(latest + 100)).exists():
      assert first.poll() is None and time.time() < deadline
      time.sleep(0.05)
  finally:
    first.send_signal(signal.SIGKILL)
    first.wait()
  result = run_main(workdir, "--mode=sample", "--config.training.n_jitted_steps=10")
  assert "wrote 256 samples" in result.stderr


def test_a_failed_sampling_run_does_not_block_a_valid_one(trained, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(trained, workdir)
  _fails_in_one_line(run_main(workdir, "--mode=sample", "--config.sampling.num_samples=0",
                              check=False), 2, "num_samples")
  run_main(workdir, "--mode=sample")
  assert glob.glob(str(workdir / "samples" / "step_10" / "pc" / "round_00000.npz"))


def test_an_unexpected_file_error_is_still_one_line(trained, tmp_path):
  """A file where --mode eval needs a folder: one line naming it, exit 2, no traceback."""
  workdir = tmp_path / "run"
  shutil.copytree(trained, workdir)
  (workdir / "eval").write_text("in the way")
  _fails_in_one_line(run_main(workdir, "--mode=eval", check=False), 2, str(workdir / "eval"))


def _fill(path):
  """Fills the file system of `path` (ENOSPC from then on)."""
  with open(os.path.join(path, "filler"), "wb", buffering=0) as f:
    try:
      while True:
        f.write(b"\0" * 65536)
        f.flush()
    except OSError as e:
      assert e.errno == errno.ENOSPC


def test_a_full_disk_is_one_line_and_the_last_checkpoint_stays_loadable(tmp_path, monkeypatch):
  """On a small tmpfs where the machine allows mounting one (else an injected ENOSPC):
  training to step 20 on a full disk fails naming the path and the last good checkpoint,
  leaves no temporary folder, and step 10 loads."""
  mount = tmp_path / "tmpfs"
  mount.mkdir()
  mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
                           capture_output=True).returncode == 0
  try:
    workdir = mount / "run"
    config = shrink(default_toy.get_default_configs(), n_iters=10)
    train(config, workdir)
    if mounted:
      _fill(mount)
    else:
      def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
      monkeypatch.setattr(ocp.CheckpointManager, "save", no_space)
    config.training.n_iters = 20
    with pytest.raises(run.WriteFailed) as error:
      train(config, workdir)
    message = str(error.value)
    assert "\n" not in message and "No space left on device" in message
    assert f"{workdir}/checkpoints/10" in message and "step 20" in message
    assert sorted(os.listdir(workdir / "checkpoints")) == ["10"]    # no temporary folder
    if mounted:
      os.remove(mount / "filler")
    state, step = run_workdir.load_state(build.build(config), str(workdir))
    assert step == 10 and int(state.step) == 10
  finally:
    if mounted:
      subprocess.run(["umount", str(mount)], check=True)


class _HeldCommit:
  """An Orbax commit future that returns once `release` is set (at most 10 s), then
  raises `error` if given (as a failed write would)."""

  def __init__(self, release: threading.Event, error=None):
    self.release, self.error = release, error

  def result(self, timeout=None):
    del timeout
    self.release.wait(10)
    if self.error:
      raise self.error

  def cancel(self):
    pass


def _hold_commits(monkeypatch, held: dict):
  """Orbax commits the checkpoint of each step in `held` ({step: _HeldCommit}), i.e.
  renames <step>.orbax-checkpoint-tmp to <step>, only once that future returns; the
  arrays are written as usual."""
  original = ocp.StandardCheckpointHandler.async_save

  async def async_save(self, directory, *args, **kwargs):
    futures = list(await original(self, directory, *args, **kwargs) or [])
    step = int(os.path.basename(os.path.dirname(str(directory))).split(".")[0])
    return futures + ([held[step]] if step in held else [])
  monkeypatch.setattr(ocp.StandardCheckpointHandler, "async_save", async_save)


@pytest.fixture(scope="module")
def toy_30():
  """The toy experiment, 30 steps, saved every 10 (built and compiled once)."""
  return build.build(shrink(default_toy.get_default_configs(), n_iters=30))


def test_training_goes_on_while_a_checkpoint_is_written_and_sigterm_waits_for_it(
    toy_30, tmp_path, monkeypatch):
  """The commits of checkpoints 10 and 15 are held back; SIGTERM arrives in step 10 -> 15,
  which releases them 0.5 s and 1 s later. Step 10 -> 15 runs while checkpoints/10 does
  not exist yet (with synchronous saves it would start only after it), nor config.json
  (recorded once a checkpoint is committed); SIGTERM's save of
  step 15 waits for it, and train raises Preempted only once 15 is committed too; 10 holds
  the state of step 10 bit for bit."""
  release_10, release_15 = threading.Event(), threading.Event()
  _hold_commits(monkeypatch, {10: _HeldCommit(release_10), 15: _HeldCommit(release_15)})
  exp = toy_30
  began_before_commit, state_10 = [], []

  def train_step(state, batch, key, frozen):
    if int(state.step) == 10:
      began_before_commit.append(not (tmp_path / "checkpoints" / "10").exists()
                                 and not (tmp_path / "config.json").exists())
      state_10.append(jax.tree_util.tree_map(np.array, state))
      threading.Timer(0.5, release_10.set).start()
      threading.Timer(1.0, release_15.set).start()
      os.kill(os.getpid(), signal.SIGTERM)
    return exp.train_step(state, batch, key, frozen)
  handler = signal.getsignal(signal.SIGTERM)
  try:
    with pytest.raises(run.Preempted, match="saved the checkpoint of step 15"):
      run_train.train(dataclasses.replace(exp, train_step=train_step), str(tmp_path))
  finally:
    signal.signal(signal.SIGTERM, handler)
  assert began_before_commit == [True]
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["10", "15"]
  assert (tmp_path / "config.json").exists()
  restored, _ = run_workdir.load_state(exp, str(tmp_path), 10)
  for a, b in zip(jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(state_10)):
    np.testing.assert_array_equal(np.asarray(a), b)


def test_a_checkpoint_that_fails_in_the_background_is_reported_with_its_step(
    toy_30, tmp_path, monkeypatch):
  """The write of step 20's checkpoint fails (ENOSPC) while the run goes on: the next save
  (step 30's) stops the run in one line naming step 20 and the last good checkpoint (10),
  and step 20's temporary folder is removed."""
  written, no_space = threading.Event(), OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
  written.set()
  _hold_commits(monkeypatch, {20: _HeldCommit(written, no_space)})
  with pytest.raises(run.WriteFailed) as error:
    run_train.train(toy_30, str(tmp_path))
  assert str(error.value) == (
      f"could not write the checkpoint of step 20 to {tmp_path}/checkpoints: No space left "
      f"on device; the last good checkpoint is {tmp_path}/checkpoints/10")
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["10"]

"""A short Fashion-MNIST run (real data, prepared offline): the eval loss falls from its
exact starting value, and train_eval writes bits/dim on the test set and a sample grid."""
import json
import math
import os

import jax
import matplotlib.pyplot as plt
import pytest

from run import build
from run import evaluate
from run import train
from configs.fashion_mnist import vp_ddpm_cpu


def small_config(data_dir):
  config = vp_ddpm_cpu.get_config()
  config.data.data_dir = data_dir
  config.data.num_eval = 256
  config.eval.feature_net = ""
  model = config.model
  model.nf, model.num_groups, model.ch_mult, model.attn_resolutions = 8, 4, (1, 2), (14,)
  training = config.training
  training.batch_size, training.n_iters, training.log_freq = 32, 80, 40
  training.snapshot_freq = training.snapshot_freq_for_preemption = 80
  config.optim.warmup = 10
  config.model.ema_rate = 0.9
  e = config.eval
  e.batch_size, e.num_loss_batches = 64, 4
  e.likelihood_points = 8
  e.likelihood.rtol = e.likelihood.atol = 1e-3
  config.sampling.ddim.num_steps = 10
  config.sampling.num_samples, config.sampling.batch_size = 64, 16     # four rounds
  return config


@pytest.mark.slow
@pytest.mark.xdist_group("fashion_mnist")
def test_zero_initialized_unet_has_unit_epsilon_loss(fashion_mnist_dir):
  """The U-Net's output layer starts at zero: epsilon-prediction loss E ||0 - z||^2 / D = 1,
  the mean of n = 4 x 64 x 784 squared normals (standard error sqrt(2 / n))."""
  config = small_config(fashion_mnist_dir)
  config.model.parameterization = "noise"
  exp = build.build(config)
  initial = exp.init_state(jax.random.PRNGKey(config.seed))
  n = 4 * 64 * 784
  assert abs(evaluate.held_out_loss(exp, initial.ema_params) - 1.0) < 4 * math.sqrt(2 / n)


@pytest.mark.slow        # ~80 s: keeps `make test` under 10 minutes
@pytest.mark.xdist_group("fashion_mnist")
def test_short_fashion_mnist_run_learns_and_reports(fashion_mnist_dir, tmp_path):
  config = small_config(fashion_mnist_dir)
  exp = build.build(config)          # the CPU config's EDM preconditioning
  initial = exp.init_state(jax.random.PRNGKey(config.seed))
  start = evaluate.held_out_loss(exp, initial.ema_params)
  state, history = train.train(exp, str(tmp_path))
  assert int(state.step) == 80 and len(history) == 80
  metrics = evaluate.report(exp, str(tmp_path), state)
  # Same held-out batches and noise: measured 0.30 at the start, 0.17 after 80 steps.
  assert metrics["eval_loss"] < 0.75 * start
  # Bits/dim on dequantized test images: a density on [0, 256)^D, so finite and positive;
  # a model no better than uniform would score 8.
  assert 0.0 < metrics["bits_per_dim"] < 8.0
  with open(tmp_path / "metrics.json") as f:
    assert json.load(f)["bits_per_dim"] == metrics["bits_per_dim"]
  grid = plt.imread(os.path.join(tmp_path, "report.png"))
  assert grid.shape[:2] == (8 * 29 - 1, 8 * 29 - 1)    # 64 samples of 28 x 28, 1 px borders


@pytest.mark.slow
@pytest.mark.xdist_group("fashion_mnist")
def test_short_fashion_mnist_run_samples_are_not_garbage(fashion_mnist_dir, tmp_path):
  """300 steps of a small U-Net (nf 8) with the CPU config's EMA (0.999 with warmup),
  preconditioning and sampler (DDIM, eta 1): 128 samples from the EMA parameters.
  Measured: 0.67 of them as close to real test images as those are to each other (near
  data); 0.0 with the EMA that keeps 0.999^300 = 74% of the zero-initialized output layer
  (`ema_warmup=False`), and 0.31 with a deterministic sampler (eta 0) on the same network.
  The threshold sits 4 binomial standard errors (128 samples) below 0.67."""
  config = small_config(fashion_mnist_dir)
  config.data.num_eval = 2000
  config.model.ema_rate = 0.999
  config.training.n_iters = config.training.snapshot_freq = 300
  config.training.snapshot_freq_for_preemption = 300
  config.optim.warmup = 50
  config.sampling.num_samples = config.sampling.batch_size = 128
  config.sampling.ddim.num_steps = 50
  exp = build.build(config)
  state, _ = train.train(exp, str(tmp_path))
  metrics = exp.data.sample_metrics(evaluate.generate(exp, state.ema_params,
                                                      jax.random.PRNGKey(0), 128)[0])
  near = 0.67
  assert metrics["near_data_fraction"] > near - 4 * math.sqrt(near * (1 - near) / 128), metrics

"""Sample-quality metrics in evaluation runs, and the Fashion-MNIST feature network."""
import json
import math
import os

import jax
import numpy as np
import pytest
import scipy.ndimage

import controllable_generation as cg
import datasets
import evaluation
import feature_nets
import run
from models import classifier
from run import build
from run import controllable
from run import evaluate
from run import train
from tests import test_image_training

QUALITY_KEYS = ("fid", "kid", "kid_std", "is", "is_std", "precision", "recall")


def _data_dir_with_own_feature_nets(fashion_mnist_dir, tmp_path):
  """A data dir that shares the prepared dataset but has its own feature_nets/."""
  data_dir = tmp_path / "data"
  data_dir.mkdir()
  os.symlink(os.path.join(fashion_mnist_dir, "fashion_mnist"), data_dir / "fashion_mnist")
  return str(data_dir)


@pytest.mark.xdist_group("fashion_mnist")
def test_a_missing_feature_network_stops_only_the_modes_that_compute_features(
    fashion_mnist_dir, tmp_path):
  """eval names the command that makes it, before writing anything; sample and inpaint
  never ask for it (here they stop at the missing checkpoint instead)."""
  config = test_image_training.small_config(_data_dir_with_own_feature_nets(fashion_mnist_dir,
                                                                            tmp_path))
  config.eval.feature_net = "auto"
  exp = build.build(config)
  workdir = tmp_path / "run"
  with pytest.raises(run.RunError, match="feature_nets train --dataset fashion_mnist"):
    evaluate.evaluate(exp, str(workdir))
  assert not workdir.exists()
  for mode in (evaluate.sample, controllable.inpaint):
    with pytest.raises(run.RunError, match="train first"):
      mode(exp, str(workdir))
  config.eval.feature_net = "resnet"
  with pytest.raises(run.RunError, match="valid choices"):
    build.build(config)
  config.eval.samplers = ("ddim", "heun")
  config.eval.feature_net = ""
  with pytest.raises(run.RunError, match="config.eval.samplers entry='heun'"):
    build.build(config)


@pytest.mark.xdist_group("fashion_mnist")
def _fid_command(capsys, *args) -> str:
  """The last line `python -m evaluation fid ...` prints."""
  capsys.readouterr()
  evaluation.main(["fid", *args])
  return capsys.readouterr().out.strip().splitlines()[-1]


@pytest.mark.slow        # ~70 s: keeps `make test` under 10 minutes
def test_eval_writes_quality_metrics_for_each_sampler(fashion_mnist_dir, tmp_path, capsys):
  # A feature network with random weights: the wiring, not the numbers, is under test.
  data_dir = _data_dir_with_own_feature_nets(fashion_mnist_dir, tmp_path)
  params = classifier.SmallCNN().init(jax.random.PRNGKey(0), np.zeros((1, 28, 28, 1)))["params"]
  feature_nets.save("fashion_mnist_cnn", data_dir, params, {"random": True})
  config = test_image_training.small_config(data_dir)
  config.eval.feature_net = "auto"
  config.eval.fid_reference_size = 512        # the first 512 training images
  config.eval.samplers = ("ddim", "edm_heun")
  config.eval.likelihood_points, config.eval.bpd_repeats = 8, 2
  config.sampling.edm_heun.num_steps = 3
  config.sampling.num_samples = 32
  config.training.n_iters = config.training.snapshot_freq = 2
  config.training.snapshot_freq_for_preemption = 2
  exp = build.build(config)
  workdir = str(tmp_path / "run")
  train.train(exp, workdir)
  (metrics,) = evaluate.evaluate(exp, workdir)
  # + 1: the final denoising step; Heun takes two evaluations on every step down to eps.
  for sampler, nfe in (("ddim", 10 + 1), ("edm_heun", 2 * 3 + 1)):
    assert metrics[f"{sampler}/nfe"] == nfe
    for key in QUALITY_KEYS:
      assert np.isfinite(metrics[f"{sampler}/{key}"]), (sampler, key)
    assert metrics[f"{sampler}/num_fake"] == 32 and metrics[f"{sampler}/num_real"] == 512
    assert metrics[f"{sampler}/fid_protocol"] == (
        "uint8 samples (32) against 512 train-split images, fashion_mnist_cnn features")
    rounds = os.listdir(os.path.join(workdir, "eval", "step_2", "samples", sampler))
    assert sorted(rounds) == ["round_00000.npz", "round_00001.npz",     # 16 per round
                              "settings.json"]
  assert (metrics["bpd_images"], metrics["bpd_repeats"]) == (8, 2)
  assert sorted(os.listdir(os.path.join(workdir, "eval", "step_2", "likelihood"))) == [
      "repeat0_00000.npz", "repeat1_00000.npz"]            # eval.batch_size 64 > 8 images
  with open(os.path.join(workdir, "eval", "metrics.jsonl")) as f:
    assert json.loads(f.readline()) == metrics
  cache = os.path.join(data_dir, "feature_nets", "reference",
                       "fashion_mnist_train_512_28px_uint8_fashion_mnist_cnn")
  assert np.load(cache + ".npz")["features"].shape == (512, 128)
  with np.load(cache + "_stats.npz") as stats:
    assert stats["mu"].shape == (128,) and stats["sigma"].shape == (128, 128)
  # --mode sample's single file, scored by the FID command against the cached reference
  # statistics, gives the FID that evaluation computes on the same samples.
  out_dir = evaluate.sample(exp, workdir)
  with np.load(os.path.join(out_dir, "samples_uint8.npz")) as f:
    exported = f["arr_0"]
  x = np.concatenate([np.load(os.path.join(out_dir, f"round_{r:05d}.npz"))["samples"]
                      for r in range(2)])
  assert exported.dtype == np.uint8 and exported.shape == (32, 28, 28, 1)
  np.testing.assert_array_equal(exported, evaluation.to_uint8(exp.data.unscale(x)))
  fid_line = _fid_command(capsys, os.path.join(out_dir, "samples_uint8.npz"),
                          cache + "_stats.npz", "--feature_net", "fashion_mnist_cnn",
                          "--data_dir", data_dir)
  np.testing.assert_allclose(float(fid_line), exp.data.sample_metrics(x)["fid"], rtol=1e-9)
  # Batches and rounds on disk are read back, not redone: other parameters give the same
  # likelihoods and samples.
  other = exp.init_state(jax.random.PRNGKey(1)).ema_params
  resumed, _ = evaluate.evaluate_params(exp, other, 2, os.path.join(workdir, "eval", "step_2"))
  assert resumed["ddim/fid"] == metrics["ddim/fid"]
  assert resumed["bits_per_dim"] == metrics["bits_per_dim"]
  assert resumed["eval_loss"] != metrics["eval_loss"]


@pytest.fixture(scope="module")
def trained_feature_net(fashion_mnist_dir, tmp_path_factory):
  data_dir = _data_dir_with_own_feature_nets(fashion_mnist_dir, tmp_path_factory.mktemp("fn"))
  # Half of `make feature-net`'s 4 epochs, to save CI two minutes.
  info = feature_nets.train_classifier("fashion_mnist", data_dir, epochs=2,
                                      log=lambda message: None)
  return info, feature_nets.load("fashion_mnist_cnn", data_dir, batch_size=500), data_dir


@pytest.mark.slow
@pytest.mark.xdist_group("fashion_mnist")
def test_feature_network_accuracy_and_fid_sanity(trained_feature_net):
  """The `make feature-net` command's network trained for 2 epochs: >= 88% test accuracy
  (measured 0.895; 0.873 after 1 epoch, 0.914 after the command's 4). FID between 5000
  training and 5000 test images is small, and grows monotonically as the test images are
  blurred or noised more (the 4-epoch network on 10 000 images: 0.23 for training images;
  blur sigma 0.5 / 1 / 2 px: 9.7 / 86 / 220; noise 0.05 / 0.1 / 0.2: 14 / 60 / 180)."""
  info, net, data_dir = trained_feature_net
  assert info["test_accuracy"] >= 0.88, info
  train_images, _ = datasets.load_labelled("fashion_mnist", "train", 28, data_dir)
  test_images, _ = datasets.load_labelled("fashion_mnist", "test", 28, data_dir)
  reference = evaluation.feature_statistics(net(test_images[:5000])[0])

  def fid(images):     # FID alone (quality_metrics' KID and k-NN precision cost a minute)
    return evaluation.frechet_distance(*reference, *evaluation.feature_statistics(
        net(images)[0]))

  real = fid(train_images[:5000])
  blurred = [fid(scipy.ndimage.gaussian_filter(test_images[5000:], (0, s, s, 0)))
             for s in (0.5, 1.0, 2.0)]
  rng = np.random.default_rng(0)
  noised = [fid(np.clip(test_images[5000:] + s * rng.normal(size=(5000, 28, 28, 1)), 0, 1))
            for s in (0.05, 0.1, 0.2)]
  assert real < 2.0 and real < blurred[0] / 3 and real < noised[0] / 3, (real, blurred, noised)
  assert np.all(np.diff(blurred) > 0) and np.all(np.diff(noised) > 0), (blurred, noised)
  assert math.isfinite(real)


@pytest.mark.slow    # the exact inpainting check stays in the default tier (controllable_generation)
@pytest.mark.xdist_group("fashion_mnist")
def test_inpaint_mode_keeps_the_known_pixels(fashion_mnist_dir, tmp_path):
  from run import controllable  # pylint: disable=g-import-not-at-top
  config = test_image_training.small_config(fashion_mnist_dir)
  config.training.n_iters = config.training.snapshot_freq = 2
  config.training.snapshot_freq_for_preemption = 2
  config.sampling.batch_size = 16
  config.sampling.pc.num_steps = 10          # Euler-Maruyama steps (the VP config's predictor)
  config.controllable.mask = "box"
  exp = build.build(config)
  workdir = str(tmp_path / "run")
  train.train(exp, workdir)
  out_dir = controllable.inpaint(exp, workdir)
  saved = np.load(os.path.join(out_dir, "inpaint.npz"))
  mask = cg.make_mask("box", saved["original"].shape)
  assert mask.mean() == 0.75                         # a 14 x 14 hole in 28 x 28
  np.testing.assert_array_equal(np.where(mask > 0, saved["result"], 0),
                                np.where(mask > 0, saved["original"], 0))
  assert np.abs(saved["result"] - saved["original"]).max() > 0.1      # the hole was sampled
  assert os.path.getsize(os.path.join(out_dir, "inpaint.png")) > 1000
  with pytest.raises(run.RunError, match="colorize needs 3-channel images"):
    controllable.colorize(exp, workdir)
  config.controllable.mask = "circle"
  with pytest.raises(run.RunError, match="valid choices: \\['half', 'box', 'random'\\]"):
    controllable.inpaint(build.build(config), workdir)

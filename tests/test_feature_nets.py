"""The Flax Inception-v3 against pytorch-fid's, with the same random weights; the feature
network commands' errors. (The trained Fashion-MNIST feature network: test_image_quality.py.)"""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import feature_nets
from models import inception
from tools import torch_peers


def test_flax_inception_equals_pytorch_fid(tmp_path):
  """Through the conversion command: a .pth state dict -> our weights file -> load."""
  reference, network = torch_peers.random_pytorch_fid_inception()
  torch.save(network.state_dict(), tmp_path / feature_nets.INCEPTION_FILE)
  feature_nets.main(["convert_inception", "--pth", str(tmp_path / feature_nets.INCEPTION_FILE),
                     "--data_dir", str(tmp_path)])
  net = feature_nets.load("inception", str(tmp_path), batch_size=2)
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(2, 28, 28, 1)).astype(np.float32)    # resized and repeated
  with torch.no_grad():
    torch_in = torch.from_numpy(np.repeat(images, 3, -1).transpose(0, 3, 1, 2))
    want_features = reference(torch_in)[0].flatten(1)
    want_logits = network.fc(want_features).numpy()
    want_features = want_features.numpy()
  features, logits = net(images)
  scale = np.abs(want_features).max()
  assert 1e-2 < scale < 1e3, scale                 # a meaningful comparison
  np.testing.assert_allclose(features, want_features, atol=1e-4 * scale)
  np.testing.assert_allclose(logits, want_logits, atol=1e-4 * np.abs(want_logits).max())


@pytest.mark.parametrize("shape", [(2, 28, 28, 1), (2, 32, 32, 3), (1, 320, 310, 3)])
def test_preprocess_equals_pytorch_interpolate(shape):
  images = np.random.default_rng(1).uniform(size=shape).astype(np.float32)
  torch_in = torch.from_numpy(np.repeat(images, 3 // shape[-1], -1).transpose(0, 3, 1, 2))
  want = 2 * F.interpolate(torch_in, size=(299, 299), mode="bilinear", align_corners=False) - 1
  np.testing.assert_allclose(inception.preprocess(images), want.numpy().transpose(0, 2, 3, 1),
                             atol=1e-5)


def test_inception_conversion_rejects_missing_and_leftover_tensors():
  _, network = torch_peers.random_pytorch_fid_inception()
  state = {k: v.numpy() for k, v in network.state_dict().items()}
  with pytest.raises(KeyError, match="Mixed_6a.branch3x3.conv.weight"):
    feature_nets.inception_params_from_state_dict(
        {k: v for k, v in state.items() if k != "Mixed_6a.branch3x3.conv.weight"})
  with pytest.raises(ValueError, match="unused tensors"):
    feature_nets.inception_params_from_state_dict({**state, "extra.weight": np.zeros(3)})
  with pytest.raises(ValueError, match="fc.kernel: shape"):
    feature_nets.inception_params_from_state_dict({**state, "fc.weight": np.zeros((10, 2048))})


def test_missing_feature_network_names_the_command(tmp_path):
  with pytest.raises(FileNotFoundError, match="python -m feature_nets train --dataset fashion_mnist"):
    feature_nets.load("fashion_mnist_cnn", str(tmp_path))
  with pytest.raises(FileNotFoundError, match="convert_inception --pth"):
    feature_nets.load("inception", str(tmp_path))
  with pytest.raises(ValueError, match="valid choices"):
    feature_nets.load("vgg", str(tmp_path))


def test_empty_data_dir_keeps_feature_networks_with_the_tfds_default(monkeypatch, tmp_path):
  """data_dir "" means TFDS's default directory for the data, so for the weights too (not
  ./feature_nets under whatever directory the run starts in)."""
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
  assert feature_nets.weights_path("inception", "") == str(
      tmp_path / "feature_nets" / "inception.msgpack")
  assert feature_nets.weights_path("inception", "data/tfds") == os.path.join(
      "data/tfds", "feature_nets", "inception.msgpack")
  with pytest.raises(FileNotFoundError, match="--data_dir ''"):
    feature_nets.load("fashion_mnist_cnn", "")

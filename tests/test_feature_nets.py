"""The Flax Inception-v3 against pytorch-fid's, with the same random weights; the feature
network commands' errors. (The trained Fashion-MNIST feature network: test_image_quality.py.)"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

# PyPI's torchvision links CUDA libraries that the CPU torch wheel lacks, so its C ops
# (nms, roi_align, ...) fail to load and its import then fails registering their fake
# kernels. The Inception classes need none of them: skip those registrations.
_register_fake = torch.library.register_fake
torch.library.register_fake = lambda *args, **kwargs: (lambda fn: fn)
try:
  import torchvision  # pylint: disable=g-import-not-at-top
  from pytorch_fid import inception as pytorch_fid_inception  # pylint: disable=g-import-not-at-top
finally:
  torch.library.register_fake = _register_fake

import feature_nets
from models import inception


def _random_pytorch_fid_inception(monkeypatch):
  """pytorch-fid's InceptionV3 (pool3 output) with random weights and batch-norm
  statistics instead of the downloaded ones, and its underlying network (for fc)."""
  monkeypatch.setattr(torchvision.models.Inception3, "load_state_dict",
                      lambda self, *args, **kwargs: None)
  monkeypatch.setattr(pytorch_fid_inception, "load_state_dict_from_url",
                      lambda *args, **kwargs: None)
  built = []
  original = pytorch_fid_inception.fid_inception_v3
  monkeypatch.setattr(pytorch_fid_inception, "fid_inception_v3",
                      lambda: built.append(original()) or built[-1])
  torch.manual_seed(0)
  reference = pytorch_fid_inception.InceptionV3([3]).eval()
  network = built[0]
  with torch.no_grad():
    for module in network.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        n = module.num_features
        module.weight.uniform_(1.5, 3.0)       # keeps activations O(1) through 20 layers
        module.bias.normal_(0.0, 0.1)
        module.running_mean.normal_(0.0, 0.1)
        module.running_var.uniform_(0.5, 1.5)
        assert module.eps == 1e-3 and n > 0
  return reference, network


def test_flax_inception_equals_pytorch_fid(monkeypatch, tmp_path):
  """Through the conversion command: a .pth state dict -> our weights file -> load."""
  reference, network = _random_pytorch_fid_inception(monkeypatch)
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


def test_inception_conversion_rejects_missing_and_leftover_tensors(monkeypatch):
  _, network = _random_pytorch_fid_inception(monkeypatch)
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

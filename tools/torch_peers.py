"""The PyTorch networks that tests and benchmarks compare against, built offline.

torch, torchvision, pytorch-fid (requirements-test.txt) and diffusers
(benchmarks/requirements.txt) are test and benchmark dependencies only.
"""
import contextlib
import importlib
import importlib.util
from unittest import mock


def import_module(name: str):
  """Imports torchvision if installed, then `name` (pytorch_fid.inception, diffusers). PyPI's
  torchvision links CUDA libraries that the CPU torch wheel lacks, so its C ops (nms,
  roi_align, ...) fail to load and its import then fails registering their fake kernels;
  the networks used here need none of them, so those registrations are skipped while
  torchvision is imported (once imported, later imports of it, e.g. diffusers' lazy ones,
  do not register again)."""
  import torch  # pylint: disable=g-import-not-at-top
  if importlib.util.find_spec("torchvision") is not None:
    with mock.patch.object(torch.library, "register_fake",
                           lambda *args, **kwargs: (lambda fn: fn)):
      importlib.import_module("torchvision")
  return importlib.import_module(name)


def random_pytorch_fid_inception():
  """(pytorch-fid's InceptionV3 (pool3 output), its underlying torchvision network, for fc)
  with random weights and batch-norm statistics instead of the downloaded ones (seed 0)."""
  import torch  # pylint: disable=g-import-not-at-top
  torchvision_models = import_module("torchvision.models")
  fid_inception = import_module("pytorch_fid.inception")
  built = []
  original = fid_inception.fid_inception_v3
  with contextlib.ExitStack() as patches:
    patches.enter_context(mock.patch.object(torchvision_models.Inception3, "load_state_dict",
                                            lambda self, *args, **kwargs: None))
    patches.enter_context(mock.patch.object(fid_inception, "load_state_dict_from_url",
                                            lambda *args, **kwargs: None))
    patches.enter_context(mock.patch.object(fid_inception, "fid_inception_v3",
                                            lambda: built.append(original()) or built[-1]))
    torch.manual_seed(0)
    reference = fid_inception.InceptionV3([3]).eval()
  network = built[0]
  with torch.no_grad():
    for module in network.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        module.weight.uniform_(1.5, 3.0)       # keeps activations O(1) through 20 layers
        module.bias.normal_(0.0, 0.1)
        module.running_mean.normal_(0.0, 0.1)
        module.running_var.uniform_(0.5, 1.5)
        assert module.eps == 1e-3 and module.num_features > 0
  return reference, network

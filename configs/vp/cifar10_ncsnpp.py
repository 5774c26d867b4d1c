"""NCSN++ with the discrete DDPM loss (VP) on CIFAR-10.

  python main.py --config configs/vp/cifar10_ncsnpp.py --workdir runs/vp_cifar10_ncsnpp --mode train

Published set: Song et al. (2021), score_sde `configs/vp/cifar10_ncsnpp.py`. Sized for accelerators
(days on 8 GPUs); on a CPU use it with the tiny overrides of tests/test_configs.py.
"""
from configs import default_cifar10


def get_config():
  config = default_cifar10.get_default_configs()
  default_cifar10.ncsnpp(config, fourier=False)
  default_cifar10.vp(config, continuous=False)
  config.sampling.pc.predictor = "reverse_diffusion"
  return config

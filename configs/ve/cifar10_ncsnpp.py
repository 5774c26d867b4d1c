"""NCSN++ with SMLD (discrete VE) training on CIFAR-10.

  python main.py --config configs/ve/cifar10_ncsnpp.py --workdir runs/ve_cifar10_ncsnpp --mode train

Published set: Song et al. (2021), score_sde `configs/ve/cifar10_ncsnpp.py`. Sized for accelerators
(days on 8 GPUs); on a CPU use it with the tiny overrides of tests/test_configs.py.
"""
from configs import default_cifar10


def get_config():
  config = default_cifar10.get_default_configs()
  default_cifar10.ncsnpp(config, fourier=False)
  config.training.loss = "smld"
  return config

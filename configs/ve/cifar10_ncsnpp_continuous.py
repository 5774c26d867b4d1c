"""NCSN++ cont. (VE SDE) on CIFAR-10.

  python main.py --config configs/ve/cifar10_ncsnpp_continuous.py --workdir runs/ve_cifar10_ncsnpp_continuous --mode train

Published set: Song et al. (2021), score_sde `configs/ve/cifar10_ncsnpp_continuous.py`. Sized for accelerators
(days on 8 GPUs); on a CPU use it with the tiny overrides of tests/test_configs.py.
"""
from configs import default_cifar10


def get_config():
  config = default_cifar10.get_default_configs()
  default_cifar10.ncsnpp(config)
  return config

"""NCSN++ cont. deep (sub-VP SDE) on CIFAR-10.

  python main.py --config configs/subvp/cifar10_ncsnpp_deep_continuous.py --workdir runs/subvp_cifar10_ncsnpp_deep_continuous --mode train

Published set: Song et al. (2021), score_sde `configs/subvp/cifar10_ncsnpp_deep_continuous.py`. Sized for accelerators
(days on 8 GPUs); on a CPU use it with the tiny overrides of tests/test_configs.py.
"""
from configs import default_cifar10


def get_config():
  config = default_cifar10.get_default_configs()
  default_cifar10.ncsnpp(config, fourier=False, deep=True)
  default_cifar10.subvp(config)
  return config

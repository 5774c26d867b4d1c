"""NCSN++ cont. (VP SDE) on CIFAR-10.

  python main.py --config configs/vp/cifar10_ncsnpp_continuous.py --workdir runs/vp_cifar10_ncsnpp_continuous --mode train

Published set: Song et al. (2021), score_sde `configs/vp/cifar10_ncsnpp_continuous.py`. Sized for accelerators
(days on 8 GPUs); on a CPU use it with the tiny overrides of tests/test_configs.py.
"""
from configs import default_cifar10


def get_config():
  config = default_cifar10.get_default_configs()
  default_cifar10.ncsnpp(config, fourier=False)
  default_cifar10.vp(config)
  return config

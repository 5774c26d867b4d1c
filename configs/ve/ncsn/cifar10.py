"""NCSN (Song & Ermon, 2019) on CIFAR-10: 10 noise levels from sigma 1 to 0.01, annealed
Langevin dynamics with 100 steps per level; published FID 25.32.

  python main.py --config configs/ve/ncsn/cifar10.py --workdir runs/ve_ncsn_cifar10 --mode train

Published set: Song et al. (2021), score_sde `configs/ve/ncsn/cifar10.py`. Sized for accelerators
(days on 8 GPUs); on a CPU use it with the tiny overrides of tests/test_configs.py.
"""
from configs import default_cifar10


def get_config():
  config = default_cifar10.get_default_configs()
  default_cifar10.ncsn(config)
  return config

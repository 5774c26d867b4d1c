"""NCSN (Song & Ermon, 2019) on CelebA 64 x 64 (10 levels, sigma 1 to 0.01).

  python main.py --config configs/ve/ncsn/celeba.py --workdir runs/ve_ncsn_celeba --mode train

Published set: Song et al. (2021), score_sde `configs/ve/ncsn/celeba.py`. Sized for accelerators
(days on 8 GPUs); on a CPU use it with the tiny overrides of tests/test_configs.py.
"""
from configs import default_celeba
from configs import default_cifar10


def get_config():
  config = default_celeba.get_default_configs()
  default_cifar10.ncsn(config)
  return config

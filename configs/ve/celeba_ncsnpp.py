"""NCSN++ with SMLD training on CelebA 64 x 64.

  python main.py --config configs/ve/celeba_ncsnpp.py --workdir runs/ve_celeba_ncsnpp --mode train

Published set: Song et al. (2021), score_sde `configs/ve/celeba_ncsnpp.py`. Sized for accelerators
(days on 8 GPUs); on a CPU use it with the tiny overrides of tests/test_configs.py.
"""
from configs import default_celeba
from configs import default_cifar10


def get_config():
  config = default_celeba.get_default_configs()
  default_cifar10.ncsnpp(config, fourier=False)
  config.training.loss = "smld"
  return config

"""NCSN++ cont. (VE) on LSUN bedroom 256 x 256.

  python main.py --config configs/ve/bedroom_ncsnpp_continuous.py --workdir runs/ve_bedroom_ncsnpp_continuous --mode train

Published set: Song et al. (2021), score_sde `configs/ve/bedroom_ncsnpp_continuous.py`. Sized for accelerators
(days on 8 GPUs); on a CPU use it with the tiny overrides of tests/test_configs.py.
"""
from configs import default_cifar10
from configs import default_lsun


def get_config():
  config = default_lsun.get_default_configs("lsun/bedroom")
  default_cifar10.ncsnpp_high_resolution(config)
  return config

"""DDPM on LSUN church_outdoor 256 x 256 (114M parameters, lr 2e-5).

  python main.py --config configs/vp/ddpm/church.py --workdir runs/vp_ddpm_church --mode train

Published set: Song et al. (2021), score_sde `configs/vp/ddpm/church.py`. Sized for accelerators
(days on 8 GPUs); on a CPU use it with the tiny overrides of tests/test_configs.py.
"""
from configs import default_cifar10
from configs import default_lsun


def get_config():
  config = default_lsun.get_default_configs("lsun/church_outdoor")
  default_cifar10.ddpm_256(config)
  return config

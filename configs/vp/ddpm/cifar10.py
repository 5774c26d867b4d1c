"""DDPM (Ho et al., 2020) on CIFAR-10: 35.7M parameters, epsilon loss, ancestral sampling;
published FID 3.17, IS 9.46.

  python main.py --config configs/vp/ddpm/cifar10.py --workdir runs/vp_ddpm_cifar10 --mode train

Published set: Song et al. (2021), score_sde `configs/vp/ddpm/cifar10.py`. Sized for accelerators
(days on 8 GPUs); on a CPU use it with the tiny overrides of tests/test_configs.py.
"""
from configs import default_cifar10


def get_config():
  config = default_cifar10.get_default_configs()
  default_cifar10.ddpm(config)
  default_cifar10.vp(config, continuous=False)
  return config

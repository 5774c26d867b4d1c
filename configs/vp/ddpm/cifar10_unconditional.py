"""DDPM (Ho et al., 2020) on CIFAR-10 without the timestep embedding (NCSNv2's technique 3,
no noise conditioning): the U-Net sees x only; epsilon loss on the discrete DDPM chain,
ancestral sampling.

  python main.py --config configs/vp/ddpm/cifar10_unconditional.py --workdir runs/vp_ddpm_cifar10_unconditional --mode train

Published set: Song et al. (2021), score_sde `configs/vp/ddpm/cifar10_unconditional.py`. Sized for accelerators
(days on 8 GPUs); on a CPU use it with the tiny overrides of tests/test_configs.py.
"""
from configs import default_cifar10


def get_config():
  config = default_cifar10.get_default_configs()
  default_cifar10.ddpm(config)
  default_cifar10.vp(config, continuous=False)
  config.model.conditional = False
  return config

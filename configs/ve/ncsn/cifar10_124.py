"""NCSN (Song & Ermon, 2019) on CIFAR-10 with NCSNv2's techniques 1, 2 and 4 (Song & Ermon,
2020, ablation): the initial noise scale of the base (sigma_max 50), 232 levels, ALD with 5
steps per level at snr 0.176.

  python main.py --config configs/ve/ncsn/cifar10_124.py --workdir runs/ve_ncsn_cifar10_124 --mode train

Published set: Song et al. (2021), score_sde `configs/ve/ncsn/cifar10_124.py`. Sized for accelerators
(days on 8 GPUs); on a CPU use it with the tiny overrides of tests/test_configs.py.
"""
from configs import default_cifar10


def get_config():
  config = default_cifar10.get_default_configs()
  sigma_max = config.sde.sigma_max        # technique 1: the base's initial noise scale
  default_cifar10.ncsn(config)
  default_cifar10.ncsnv2_techniques(config, sigma_max=sigma_max, num_scales=232, snr=0.176)
  return config

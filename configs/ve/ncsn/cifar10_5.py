"""NCSN (Song & Ermon, 2019) on CIFAR-10 with NCSNv2's technique 5 only (Song & Ermon,
2020, ablation): NCSN's 10 levels from sigma 1 and ALD with 100 steps per level, plus
EMA of rate 0.999.

  python main.py --config configs/ve/ncsn/cifar10_5.py --workdir runs/ve_ncsn_cifar10_5 --mode train

Published set: Song et al. (2021), score_sde `configs/ve/ncsn/cifar10_5.py`. Sized for accelerators
(days on 8 GPUs); on a CPU use it with the tiny overrides of tests/test_configs.py.
"""
from configs import default_cifar10


def get_config():
  config = default_cifar10.get_default_configs()
  default_cifar10.ncsn(config)
  config.model.ema_rate = 0.999
  return config

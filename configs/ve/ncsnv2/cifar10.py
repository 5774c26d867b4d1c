"""NCSNv2 (Song & Ermon, 2020) on CIFAR-10: 232 levels from sigma 50, ALD with 5 steps
per level; published FID 10.87.

  python main.py --config configs/ve/ncsnv2/cifar10.py --workdir runs/ve_ncsnv2_cifar10 --mode train

Published set: Song et al. (2021), score_sde `configs/ve/ncsnv2/cifar10.py`. Sized for accelerators
(days on 8 GPUs); on a CPU use it with the tiny overrides of tests/test_configs.py.
"""
from configs import default_cifar10


def get_config():
  config = default_cifar10.get_default_configs()
  default_cifar10.ncsnv2(config)
  config.sde.num_scales = 232
  config.sampling.pc.n_steps = 5
  config.sampling.pc.snr = 0.176
  return config

"""NCSNv2 on CelebA 64 x 64: 500 levels from sigma 90.

  python main.py --config configs/ve/ncsnv2/celeba.py --workdir runs/ve_ncsnv2_celeba --mode train

Published set: Song et al. (2021), score_sde `configs/ve/ncsnv2/celeba.py`. Sized for accelerators
(days on 8 GPUs); on a CPU use it with the tiny overrides of tests/test_configs.py.
"""
from configs import default_celeba
from configs import default_cifar10


def get_config():
  config = default_celeba.get_default_configs()
  default_cifar10.ncsnv2(config)
  config.sde.num_scales = 500
  config.sampling.pc.n_steps = 5
  config.sampling.pc.snr = 0.128
  return config

"""NCSNv2 on LSUN bedroom 128 x 128: 1086 levels from sigma 190.

  python main.py --config configs/ve/ncsnv2/bedroom.py --workdir runs/ve_ncsnv2_bedroom --mode train

Published set: Song et al. (2021), score_sde `configs/ve/ncsnv2/bedroom.py`. Sized for accelerators
(days on 8 GPUs); on a CPU use it with the tiny overrides of tests/test_configs.py.
"""
from configs import default_cifar10
from configs import default_lsun


def get_config():
  config = default_lsun.get_default_configs("lsun/bedroom")
  default_cifar10.ncsnv2(config, levels="128")
  config.data.image_size = 128
  config.sde.sigma_max = 190.0
  config.sde.num_scales = 1086
  config.training.batch_size = 128
  config.model.ema_rate = 0.9999
  config.sampling.pc.n_steps = 3
  config.sampling.pc.snr = 0.095
  return config

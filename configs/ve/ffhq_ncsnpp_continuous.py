"""NCSN++ cont. (VE) on FFHQ 1024 x 1024 (TFRecord folder
--config.data.dataset=tfrecords:/path/to/ffhq-r10).

  python main.py --config configs/ve/ffhq_ncsnpp_continuous.py --workdir runs/ve_ffhq_ncsnpp_continuous --mode train

Published set: Song et al. (2021), score_sde `configs/ve/ffhq_ncsnpp_continuous.py`. Sized for accelerators
(days on 8 GPUs); on a CPU use it with the tiny overrides of tests/test_configs.py.
"""
from configs import default_cifar10
from configs import default_lsun


def get_config():
  config = default_lsun.get_default_configs("tfrecords:data/ffhq-r10")
  default_cifar10.ncsnpp_high_resolution(config, size=1024)
  config.training.reduce_mean = True
  return config

"""DDPM on CelebA-HQ 256 x 256 (TFRecord folder: set
--config.data.dataset=tfrecords:/path/to/celebahq-r08).

  python main.py --config configs/vp/ddpm/celebahq.py --workdir runs/vp_ddpm_celebahq --mode train

Published set: Song et al. (2021), score_sde `configs/vp/ddpm/celebahq.py`. Sized for accelerators
(days on 8 GPUs); on a CPU use it with the tiny overrides of tests/test_configs.py.
"""
from configs import default_cifar10
from configs import default_lsun


def get_config():
  config = default_lsun.get_default_configs("tfrecords:data/celebahq-r08")
  default_cifar10.ddpm_256(config)
  return config

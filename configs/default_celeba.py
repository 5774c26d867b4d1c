"""Shared base of the CelebA experiments: 64 x 64, the central 140 x 140 crop resized
(as published), sigma_max 90 (score_sde `default_celeba_configs.py`)."""
from configs import default_cifar10


def get_default_configs():
  config = default_cifar10.get_default_configs()
  config.data.dataset = "celeba"
  config.data.image_size = 64
  config.sde.sigma_max = 90.0
  config.sampling.pc.snr = 0.17
  return config

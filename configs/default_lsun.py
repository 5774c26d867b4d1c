"""Shared base of the 256 px experiments (LSUN, and CelebA-HQ / FFHQ from TFRecord
folders; score_sde `default_lsun_configs.py`): sigma_max 378, N = 2000, batch 64,
2.4M steps, no dropout."""
from configs import default_cifar10


def get_default_configs(dataset="lsun/bedroom"):
  config = default_cifar10.get_default_configs()
  config.data.dataset = dataset
  config.data.image_size = 256
  config.sde.sigma_max = 378.0
  config.sde.num_scales = 2000
  config.model.dropout = 0.0
  config.training.batch_size = 64
  config.training.n_iters = 2_400_000
  config.training.snapshot_freq_for_preemption = 5000
  config.sampling.pc.snr = 0.075
  return config

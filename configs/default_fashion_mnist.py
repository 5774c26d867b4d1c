"""Shared base of the Fashion-MNIST experiments (28 x 28 x 1, the real data prepared
offline from the Debian package):

  apt-get install -y dataset-fashion-mnist
  python -m datasets prepare_fashion_mnist --data_dir=data/tfds
  python -m feature_nets train --dataset fashion_mnist --data_dir data/tfds   # FID features

(`make feature-net` runs all three.)

VP SDE with the continuous loss, a small DDPM U-Net (three levels: 28, 14, 7 px), data in
[-1, 1], no flips (the classes are not mirror-symmetric in general, e.g. shoes).
"""
from configs import default_cifar10


def get_default_configs():
  config = default_cifar10.get_default_configs()
  config.seed = 0
  data = config.data
  data.dataset = "fashion_mnist"
  data.data_dir = "data/tfds"
  data.image_size = 28
  data.num_channels = 1
  data.random_flip = False
  data.num_eval = 10_000           # the whole test split: the FID / KID reference set
  default_cifar10.ddpm(config)
  default_cifar10.vp(config)
  model = config.model
  model.ch_mult = (1, 2, 2)
  model.attn_resolutions = (7,)
  model.dropout = 0.0
  model.ema_rate = 0.999             # with warmup (model.ema_warmup)
  # EDM preconditioning: bounded x0 estimates where alpha -> 0, where epsilon prediction
  # multiplies the network's error by sigma / alpha (docs/results/fashion_mnist.md).
  model.parameterization = "edm"
  model.sigma_data = 0.5
  config.training.snapshot_freq_for_preemption = 1000
  config.training.n_jitted_steps = 1      # > 1 on the CPU: n copies of the step to compile
  config.training.log_freq = 100
  config.optim.warmup = 500
  config.optim.lr = 1e-3
  sampling = config.sampling
  # Ancestral steps (DDIM with eta 1): the injected noise corrects the small network's
  # errors; the deterministic samplers blow up on part of the samples (fashion_mnist.md).
  sampling.method = "ddim"
  sampling.ddim.num_steps = 100
  sampling.ddim.eta = 1.0
  sampling.num_samples = sampling.batch_size = 64
  evaluate = config.eval
  evaluate.enable_likelihood = True
  evaluate.likelihood_points = 256
  evaluate.enable_sampling = True
  evaluate.feature_net = "fashion_mnist_cnn"    # make feature-net
  return config

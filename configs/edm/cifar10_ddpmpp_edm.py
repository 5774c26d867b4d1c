"""EDM-style CIFAR-10 (Karras et al., 2022, config F without augmentation): score_sde's
DDPM++ network under EDM's process (sigma = t up to 80), preconditioning (sigma_data
0.5, data in [-1, 1]), loss (ln sigma ~ N(-1.2, 1.2^2), weight (sigma^2 + sigma_data^2) /
(sigma sigma_data)^2) and sampler: EDM's 18-point rho = 7 grid from 80 to 0.002, Heun on
its 17 intervals, then the Euler step to sigma = 0, which is Tweedie's denoising step
here (`denoise`): 35 network evaluations.

  python main.py --config configs/edm/cifar10_ddpmpp_edm.py --workdir runs/edm_cifar10 --mode train

Sized for accelerators (EDM: 200 M images at batch 512, ~2 days on 8 V100s; Karras et
al. report FID 1.97 for their DDPM++ variant with augmentation, which is not built here,
so do not expect it). On a CPU use it with the tiny overrides of tests/test_configs.py.
"""
from configs import default_cifar10


def get_config():
  config = default_cifar10.get_default_configs()
  default_cifar10.ddpmpp(config)
  config.data.centered = True
  config.sde.name = "edm"
  config.sde.sigma_max = 80.0
  config.model.parameterization = "edm"
  config.model.sigma_data = 0.5
  config.model.dropout = 0.13
  t = config.training
  t.loss = "weighted"
  t.weighted.weighting, t.weighted.noise_levels = "edm", "log_normal"
  t.batch_size = 512
  config.optim.lr = 1e-3
  s = config.sampling
  s.method = "edm_heun"
  s.edm_heun.num_steps, s.edm_heun.eps, s.edm_heun.denoise = 17, 2e-3, True
  return config

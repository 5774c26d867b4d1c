"""The CPU Fashion-MNIST network of vp_ddpm_cpu.py (same U-Net, EMA and training budget)
under EDM (Karras et al., 2022): its process (alpha = 1, sigma = t in [0.002, 80]), its
preconditioning (sigma_data 0.5) and its loss (ln sigma ~ N(-1.2, 1.2^2), weight
(sigma^2 + sigma_data^2) / (sigma sigma_data)^2 on the denoiser's error). The samplers
stop at sigma = 0.002 and run on EDM's rho grid (the PC sampler too: steps uniform in
sigma are far too coarse at low noise).

  python main.py --config configs/fashion_mnist/edm_ddpm_cpu.py \
      --workdir runs/fmnist_edm_cpu --mode train_eval

About 20 minutes of training on 2 quiet CPU cores. One row of
docs/results/fashion_mnist.md's process table.
"""
from configs.fashion_mnist import vp_ddpm_cpu


def get_config():
  config = vp_ddpm_cpu.get_config()
  config.sde.name = "edm"
  config.sde.sigma_max = 80.0
  config.training.loss = "weighted"
  config.training.weighted.weighting = "edm"
  config.training.weighted.noise_levels = "log_normal"
  s = config.sampling
  for name in ("pc", "ddim", "edm_heun", "dpm_solver_2m", "dpm_solver_2m_sde", "dpm_solver_3m",
               "dpm_solver_2s"):
    s[name].eps = 2e-3
    s[name].grid = "edm"
  s.ode.eps = 2e-3
  config.eval.likelihood.eps = 2e-3
  return config

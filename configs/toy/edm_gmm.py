"""EDM (Karras et al., 2022) on the 2-D mixture: its process (alpha = 1, sigma = t,
sigma_max 10), its preconditioning and its loss (ln sigma ~ N(-1.2, 1.2^2), weight
(sigma^2 + sigma_data^2) / (sigma sigma_data)^2 on the denoiser's error: losses.
weighted_loss with "edm" / "log_normal").

  python main.py --config configs/toy/edm_gmm.py --workdir runs/edm_gmm --mode train_eval

About 2 minutes on 2 CPU cores. The samplers stop at sigma = 0.002, EDM's sigma_min, and
the few-step ones run on EDM's rho grid. The prior N(0, 10^2) ignores the data mean, as
VE's does.
"""
from configs import default_toy


def get_config():
  config = default_toy.get_default_configs()
  config.sde.name = "edm"
  config.sde.sigma_max = 10.0
  config.model.parameterization = "edm"
  config.training.loss = "weighted"
  config.training.weighted.weighting = "edm"
  config.training.weighted.noise_levels = "log_normal"
  config.sampling.pc.snr = 0.16
  for name in ("pc", "ddim", "edm_heun", "dpm_solver_2m", "dpm_solver_3m"):
    config.sampling[name].eps = 2e-3
  for name in ("ddim", "edm_heun", "dpm_solver_2m", "dpm_solver_3m"):
    config.sampling[name].grid = "edm"
  return config

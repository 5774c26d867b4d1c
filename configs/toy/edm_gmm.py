"""EDM's process (alpha = 1, sigma = t, sigma_max 10) with EDM's preconditioning,
continuous-time DSM, on the 2-D mixture.

  python main.py --config configs/toy/edm_gmm.py --workdir runs/edm_gmm --mode train_eval

About 2 minutes on 2 CPU cores. Training times are uniform in sigma (the continuous loss
of the other configs), which puts few samples at small noise; the samplers stop at
sigma = 0.002, EDM's sigma_min. The prior N(0, 10^2) ignores the data mean, as VE's.
"""
from configs import default_toy


def get_config():
  config = default_toy.get_default_configs()
  config.sde.name = "edm"
  config.sde.sigma_max = 10.0
  config.model.parameterization = "edm"
  config.sampling.pc.snr = 0.16
  for name in ("pc", "ddim", "edm_heun", "dpm_solver_2m"):
    config.sampling[name].eps = 2e-3
  for name in ("ddim", "edm_heun", "dpm_solver_2m"):
    config.sampling[name].grid = "edm"
  return config

"""SMLD / NCSN: VE SDE with the discrete sigma^2-weighted loss on N = 100 geometric noise
levels, sampled by annealed Langevin dynamics after a reverse-diffusion predictor.

  python main.py --config configs/toy/smld_ve_gmm.py --workdir runs/smld --mode train_eval

About 3 minutes on 2 CPU cores; samples recover the mixture weights.
"""
from configs import default_toy


def get_config():
  config = default_toy.get_default_configs()
  config.sde.name = "vesde"
  config.sde.num_scales = 100
  config.training.loss = "smld"
  config.sampling.pc.corrector = "ald"
  config.sampling.pc.snr = 0.16
  return config

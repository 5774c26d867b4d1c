"""DDPM: VP SDE with the discrete epsilon loss on N = 1000 steps, ancestral sampling.

  python main.py --config configs/toy/ddpm_vp_gmm.py --workdir runs/ddpm --mode train_eval

About 3 minutes on 2 CPU cores; samples recover the mixture weights.
"""
from configs import default_toy


def get_config():
  config = default_toy.get_default_configs()
  config.training.loss = "ddpm"
  config.training.reduce_mean = True
  config.sampling.pc.predictor = "ancestral_sampling"
  config.sampling.pc.corrector = "none"
  return config

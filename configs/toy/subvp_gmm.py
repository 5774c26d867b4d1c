"""sub-VP SDE, continuous-time DSM with likelihood weighting and log-SNR importance
sampling, on the 2-D mixture.

  python main.py --config configs/toy/subvp_gmm.py --workdir runs/subvp_gmm --mode train_eval

About 3 minutes on 2 CPU cores; expect an NLL close to the VP run's (~1.9 nats).
"""
from configs import default_toy


def get_config():
  config = default_toy.get_default_configs()
  config.sde.name = "subvpsde"
  config.training.likelihood_weighting = True
  config.training.importance_sampling = True
  return config

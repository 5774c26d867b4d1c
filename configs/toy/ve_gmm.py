"""VE SDE (sigma 0.01 -> 10), continuous-time DSM, on the 2-D mixture.

  python main.py --config configs/toy/ve_gmm.py --workdir runs/ve_gmm --mode train_eval

About 3 minutes on 2 CPU cores. The VE prior N(0, 10^2) ignores the data mean, which
costs the likelihood a few hundredths of a nat against VP.
"""
from configs import default_toy


def get_config():
  config = default_toy.get_default_configs()
  config.sde.name = "vesde"
  config.sampling.pc.snr = 0.16
  return config

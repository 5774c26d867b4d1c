"""The rectified-flow interpolant x_t = (1 - t) x_0 + t z (T = 0.999), continuous-time
DSM, on the 2-D mixture: the score network trained here gives the flow-matching
velocity -(x + t s) / (1 - t) as its probability-flow ODE.

  python main.py --config configs/toy/rf_gmm.py --workdir runs/rf_gmm --mode train_eval

About 2 minutes on 2 CPU cores.
"""
from configs import default_toy


def get_config():
  config = default_toy.get_default_configs()
  config.sde.name = "rectified_flow"
  config.sde.T = 0.999
  # The drift f = -1 / (1 - t) is stiff near T: at rtol 1e-5 the exact-score likelihood
  # errs by up to 0.010 nats, at 1e-7 by 0.0014 (tests/test_likelihood.py).
  config.eval.likelihood.rtol = config.eval.likelihood.atol = 1e-7
  return config

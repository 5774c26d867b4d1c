"""VP SDE on the checkerboard (uniform on 8 squares, exact NLL = log 8 = 2.079 nats).

  python main.py --config configs/toy/vp_checkerboard.py --workdir runs/checker --mode train_eval

About 4 minutes on 2 CPU cores; the sharp edges keep the NLL a little above log 8.
"""
from configs import default_toy


def get_config():
  config = default_toy.get_default_configs()
  config.data.dataset = "checkerboard"
  config.model.hidden = 256
  return config

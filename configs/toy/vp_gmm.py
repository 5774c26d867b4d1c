"""VP SDE, continuous-time DSM, on the 3-component 2-D mixture (weights 0.2/0.3/0.5).

  python main.py --config configs/toy/vp_gmm.py --workdir runs/vp_gmm --mode train_eval

The README's demo. About 1 minute on 2 CPU cores (6000 steps of batch 512, then
likelihood and 4000 PC samples). Expect a held-out NLL within ~0.05 nats of the
mixture's entropy (~1.9 nats) and recovered weights within ~0.02 of 0.2/0.3/0.5.
"""
from configs import default_toy


def get_config():
  return default_toy.get_default_configs()

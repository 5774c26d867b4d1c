"""Consistency training (Song et al., 2023, Algorithm 3) on the 2-D mixture, no teacher:
the student a consistency function (parameterization "consistency", boundary eps = 1e-3)
of the toy MLP under the VP SDE, the pair (x_0, z) of each example standing in for the
score, on EDM's grid of 40 steps with the target an EMA of rate mu = 0.95 (the paper's
N(k) and mu(k) schedules instead with --config.training.consistency.schedule=True; their
constants are CIFAR-10's, set for 800k steps), then one-step sampling.

  python main.py --config configs/toy/ct_vp_gmm.py --workdir runs/ct_vp_gmm --mode train_eval

The samples are scored as any run's (MMD and weights against the mixture); the likelihood
is off: the probability-flow ODE of a consistency function's score is not what it learns.
"""
from configs.toy import cd_vp_gmm


def get_config():
  config = cd_vp_gmm.get_config()
  t = config.training
  t.loss = "consistency_training"
  t.consistency.teacher_workdir, t.consistency.teacher_checkpoint_step = "", -1
  return config

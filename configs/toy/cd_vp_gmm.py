"""Consistency distillation (Song et al., 2023) on the 2-D mixture, from the VP run of
configs/toy/vp_gmm.py (train it first, into runs/vp_gmm): one Heun step of the teacher's
probability-flow ODE on EDM's grid of 40 steps, the student a consistency function
(parameterization "consistency", boundary eps = 1e-3) of the same MLP, its target the EMA
of rate mu = 0.95 (the paper's), then one-step sampling.

  python main.py --config configs/toy/vp_gmm.py --workdir runs/vp_gmm --mode train
  python main.py --config configs/toy/cd_vp_gmm.py --workdir runs/cd_vp_gmm --mode train_eval

The student's samples are scored as any run's (MMD and weights against the mixture); their
likelihood is off: the probability-flow ODE of a consistency function's score is not what
it learns. Sample in more steps with --config.sampling.consistency.num_steps=2.
"""
from configs import default_toy


def get_config():
  config = default_toy.consistency_student(default_toy.get_default_configs())
  c = config.training.consistency
  c.teacher_workdir, c.teacher_checkpoint_step, c.num_steps = "runs/vp_gmm", 6000, 40
  return config

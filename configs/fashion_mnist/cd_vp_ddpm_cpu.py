"""Consistency distillation (Song et al., 2023) on Fashion-MNIST from the CPU VP run of
configs/fashion_mnist/vp_ddpm_cpu.py (run B of docs/results/fashion_mnist.md: train it
first, into runs/fmnist_cpu): the student is the same U-Net as a consistency function
(parameterization "consistency", boundary eps = 1e-3) and starts from the teacher's EMA
parameters, as in the paper; one Heun step of the teacher's probability-flow ODE on EDM's
grid of N = 18 steps (the paper's CIFAR-10 setting), target EMA mu = 0.95, squared L2
distance (the paper's LPIPS needs ImageNet weights, which are not available offline here).

  python main.py --config configs/fashion_mnist/cd_vp_ddpm_cpu.py \
      --workdir runs/fmnist_cd --mode train_eval

Samples in one step (--config.sampling.consistency.num_steps=2 or 4 for more). The
held-out loss and the likelihood are off: the loss is a DSM-type loss's, and the
probability-flow ODE of a consistency function's score is not what it learns.
"""
from configs import default_toy
from configs.fashion_mnist import vp_ddpm_cpu


def get_config():
  config = default_toy.consistency_student(vp_ddpm_cpu.get_config())
  c = config.training.consistency
  c.teacher_workdir, c.teacher_checkpoint_step = "runs/fmnist_cpu", 2400
  c.init_student = True
  config.optim.warmup = 0               # the student starts from a trained network
  config.optim.lr = 4e-4                # the paper's CIFAR-10 rate (Song et al., 2023, App. C)
  return config

"""The CPU Fashion-MNIST config of vp_ddpm_cpu.py (same network, preconditioning, EMA and
training budget) under the sub-VP SDE (beta 0.1 -> 20).

  python main.py --config configs/fashion_mnist/subvp_ddpm_cpu.py \
      --workdir runs/fmnist_subvp_cpu --mode train_eval

One row of docs/results/fashion_mnist.md's SDE table.
"""
from configs.fashion_mnist import vp_ddpm_cpu


def get_config():
  config = vp_ddpm_cpu.get_config()
  config.sde.name = "subvpsde"
  return config

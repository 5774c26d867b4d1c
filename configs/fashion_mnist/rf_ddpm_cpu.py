"""The CPU Fashion-MNIST network of vp_ddpm_cpu.py (same U-Net, EMA and training budget)
as a rectified flow (Liu et al., 2023; Lipman et al., 2023): the interpolant
x_t = (1 - t) x_0 + t z (T = 0.999), the network predicting the flow-matching velocity
z - x_0 (parameterization "flow"), trained by the flow-matching loss with t uniform.

  python main.py --config configs/fashion_mnist/rf_ddpm_cpu.py \
      --workdir runs/fmnist_rf_cpu --mode train_eval

About 20 minutes of training on 2 quiet CPU cores. One row of
docs/results/fashion_mnist.md's process table.
"""
from configs.fashion_mnist import vp_ddpm_cpu


def get_config():
  config = vp_ddpm_cpu.get_config()
  config.sde.name = "rectified_flow"
  config.sde.T = 0.999
  config.model.parameterization = "flow"
  config.training.loss = "weighted"
  config.training.weighted.weighting = "flow_matching"
  config.training.weighted.noise_levels = "uniform"
  # The likelihood keeps rtol = atol = 1e-5: the stiff drift near T costs up to 0.01 nats
  # on the 2-D mixture (configs/toy/rf_gmm.py tightens it); the same error here would be
  # 2e-5 bits/dim over 784 pixels (not measured on images). 1e-7 takes hours on a CPU.
  return config

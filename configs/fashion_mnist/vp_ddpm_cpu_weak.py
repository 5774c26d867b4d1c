"""A weak model for autoguidance (Karras et al., 2024) of the CPU VP run
(configs/fashion_mnist/vp_ddpm_cpu.py, run B): the same U-Net at half width (nf 8, one
channel per GroupNorm group) trained a third as long (800 steps). The paper's best weak
models are smaller and shorter-trained versions of the main one, as this is.

  python main.py --config configs/fashion_mnist/vp_ddpm_cpu_weak.py \
      --workdir runs/fmnist_weak --mode train

Then guide run B with it: --config.sampling.autoguidance.workdir=runs/fmnist_weak
--config.sampling.autoguidance.weight=2 (docs/results/fashion_mnist_autoguidance.md).
"""
from configs.fashion_mnist import vp_ddpm_cpu


def get_config():
  config = vp_ddpm_cpu.get_config()
  config.model.nf = 8
  config.training.n_iters = 800
  config.training.snapshot_freq = 400
  return config

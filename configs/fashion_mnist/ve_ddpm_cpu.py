"""The CPU Fashion-MNIST config of vp_ddpm_cpu.py (same network, preconditioning, EMA and
training budget) under the VE SDE: sigma from 0.01 to 50 (Song & Ermon's technique 1:
the largest distance between two training images, in [-1, 1], measured 44 on 5000 of
them), PC sampling with the reverse-diffusion predictor and a Langevin corrector.

  python main.py --config configs/fashion_mnist/ve_ddpm_cpu.py \
      --workdir runs/fmnist_ve_cpu --mode train_eval

One row of docs/results/fashion_mnist.md's SDE table.
"""
from configs.fashion_mnist import vp_ddpm_cpu


def get_config():
  config = vp_ddpm_cpu.get_config()
  config.sde.name = "vesde"
  config.sde.sigma_min, config.sde.sigma_max = 0.01, 50.0
  config.sampling.pc.predictor = "reverse_diffusion"
  config.sampling.pc.corrector = "langevin"
  return config

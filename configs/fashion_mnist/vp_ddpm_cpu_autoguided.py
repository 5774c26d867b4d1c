"""Run B (configs/fashion_mnist/vp_ddpm_cpu.py) sampled with autoguidance (Karras et al.,
2024) by its own checkpoint at step 800, w = 2, DDIM eta 1 at 20 steps: the best row of
docs/results/fashion_mnist_autoguidance.md (FID 19.7 +- 1.2 against 40.2 +- 1.0 unguided at
the same steps). Training settings are run B's, so it samples a run trained by that config:

  python main.py --config configs/fashion_mnist/vp_ddpm_cpu_autoguided.py \
      --workdir runs/fmnist_cpu --mode sample
"""
from configs.fashion_mnist import vp_ddpm_cpu


def get_config():
  config = vp_ddpm_cpu.get_config()
  a = config.sampling.autoguidance
  a.workdir, a.checkpoint_step, a.weight = "runs/fmnist_cpu", 800, 2.0
  config.sampling.ddim.num_steps = 20
  return config

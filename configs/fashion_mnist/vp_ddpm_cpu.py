"""Fashion-MNIST on a 2-core CPU: a 0.28M-parameter DDPM U-Net (nf 16, one block per
level, 8 GroupNorm groups) with the VP SDE, 2400 steps of batch 64.

  python main.py --config configs/fashion_mnist/vp_ddpm_cpu.py \
      --workdir runs/fmnist_cpu --mode train_eval

Training: about 30 minutes on 2 quiet CPU cores (0.76 s per step: 17.7 GFLOP at ~23
GFLOP/s, XLA:CPU's convolution gradients being the bottleneck; 61 minutes measured with
another job on the cores, final loss 0.040). The evaluation that follows (bits/dim of 256
test images through the probability-flow ODE at rtol 1e-5, then 64 samples by DPM-Solver,
50 steps) took more than 10 further minutes there; docs/results/fashion_mnist.md.
"""
from configs import default_fashion_mnist


def get_config():
  config = default_fashion_mnist.get_default_configs()
  config.model.nf = 16
  config.model.num_groups = 8
  config.model.num_res_blocks = 1
  config.training.batch_size = 64
  config.training.n_iters = 2400
  config.training.snapshot_freq = 800
  return config

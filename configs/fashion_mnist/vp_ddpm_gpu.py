"""Fashion-MNIST on one GPU: a 6.8M-parameter DDPM U-Net (nf 64, two blocks per level,
attention at 14 and 7 px) with the VP SDE, 100k steps of batch 128.

  python main.py --config configs/fashion_mnist/vp_ddpm_gpu.py \
      --workdir runs/fmnist_gpu --mode train_eval

Sized for one accelerator (a few hours); bfloat16 compute:
--config.model.dtype=bfloat16.
"""
from configs import default_fashion_mnist


def get_config():
  config = default_fashion_mnist.get_default_configs()
  config.model.nf = 64
  config.model.num_res_blocks = 2
  config.model.attn_resolutions = (14, 7)
  config.training.batch_size = 128
  config.training.n_jitted_steps = 5
  config.training.n_iters = 100_000
  config.training.snapshot_freq = 10_000
  config.optim.lr = 2e-4
  config.sampling.ddim.num_steps = 250
  config.eval.likelihood_points = 1000
  return config

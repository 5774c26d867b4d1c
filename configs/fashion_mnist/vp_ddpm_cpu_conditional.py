"""The CPU Fashion-MNIST config of vp_ddpm_cpu.py, class-conditional: the network sees
the garment class (an embedding added to the noise embedding), replaced by the null label
for 10% of the training examples, so one network gives both the conditional and the
unconditional score for classifier-free guidance.

  python main.py --config configs/fashion_mnist/vp_ddpm_cpu_conditional.py \
      --workdir runs/fmnist_cond_cpu --mode train
  python main.py --config configs/fashion_mnist/vp_ddpm_cpu_conditional.py \
      --workdir runs/fmnist_cond_cpu --mode sample \
      --config.sampling.class_label=7 --config.sampling.guidance_scale=1.0   # sneakers

Training: as vp_ddpm_cpu.py (about 20 minutes on 2 quiet cores). Guidance sweep, class
accuracy and FID: python -m experiments.fashion_mnist_guidance (docs/results/).
"""
from configs.fashion_mnist import vp_ddpm_cpu


def get_config():
  config = vp_ddpm_cpu.get_config()
  config.model.num_label_classes = 10
  config.training.label_dropout = 0.1
  return config

"""Every image config builds; at a tiny width it initializes, maps images to images and
(slow) runs one train step. The 2-D configs train a tiny run in test_training.py."""
import glob
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import losses
import run_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE_CONFIGS = sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "configs", "**", "*.py"),
                                                recursive=True)
    if "get_config" in open(p).read() and os.path.join("configs", "toy") not in p)


def tiny(path):
  """The config at width nf = 8 (NCSNv2: 4) and the smallest image size its depth allows."""
  import importlib  # pylint: disable=g-import-not-at-top
  config = importlib.import_module(path[:-3].replace("/", ".")).get_config()
  model = config.model
  model.nf = 4 if model.name == "ncsnv2" else 8
  if "num_groups" in model:
    model.num_groups = 4
  if "num_res_blocks" in model:
    model.num_res_blocks = 1
  levels = len(model.ch_mult) if "ch_mult" in model else 4
  size = 2 ** (levels - 1) * (7 if config.data.image_size == 28 else 2)
  config.data.image_size = size
  if "attn_resolutions" in model:
    model.attn_resolutions = (size // 2,)
  config.training.batch_size = 2
  return config


def test_the_published_set_is_complete():
  names = set(IMAGE_CONFIGS)
  for expected in ["configs/ve/cifar10_ncsnpp_continuous.py", "configs/ve/ncsn/cifar10.py",
                   "configs/ve/ncsnv2/cifar10.py", "configs/vp/ddpm/cifar10.py",
                   "configs/vp/cifar10_ddpmpp_deep_continuous.py",
                   "configs/subvp/cifar10_ncsnpp_deep_continuous.py",
                   "configs/ve/celeba_ncsnpp.py", "configs/ve/church_ncsnpp_continuous.py",
                   "configs/ve/celebahq_256_ncsnpp_continuous.py",
                   "configs/ve/ffhq_ncsnpp_continuous.py",
                   "configs/fashion_mnist/vp_ddpm_cpu.py", "configs/fashion_mnist/vp_ddpm_gpu.py"]:
    assert expected in names


@pytest.mark.parametrize("path", IMAGE_CONFIGS)
def test_image_config_builds_and_maps_images_to_images(path):
  config = tiny(path)
  run_lib.validate(config)
  model = run_lib.build_model(config)
  x = jnp.zeros((2, *run_lib.data_shape(config)))
  params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, jnp.zeros((2,))))
  out = jax.eval_shape(lambda p: model.apply(p, x, jnp.zeros((2,))), params)
  assert out.shape == x.shape and out.dtype == jnp.float32


@pytest.mark.slow
@pytest.mark.parametrize("path", IMAGE_CONFIGS)
def test_image_config_runs_one_train_step(path):
  config = tiny(path)
  sde, model, optimizer = (run_lib.build_sde(config), run_lib.build_model(config),
                           run_lib.build_optimizer(config))
  shape = run_lib.data_shape(config)
  replicated = jax.sharding.NamedSharding(run_lib.make_mesh(), jax.sharding.PartitionSpec())
  state = run_lib.init_state(config, model, optimizer, shape, replicated)
  step = jax.jit(losses.get_train_step(run_lib.build_loss_fn(config, sde, model), optimizer,
                                       config.model.ema_rate))
  batch = jax.random.uniform(jax.random.PRNGKey(0), (1, 2, *shape))
  state, metrics = step(state, batch, jax.random.PRNGKey(1))
  assert int(state.step) == 1 and np.isfinite(float(metrics["loss"]))

"""Every image config builds; at a tiny width it initializes, maps images to images and
(slow) runs one train step. The 2-D configs train a tiny run in test_training.py."""
import glob
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import run
from run import build

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE_CONFIGS = sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "configs", "**", "*.py"),
                                                recursive=True)
    if "get_config" in open(p).read() and os.path.join("configs", "toy") not in p
    and not p.endswith("score_sde.py"))   # wraps the others (tests/test_score_sde_import.py)


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
  config.training.batch_size = config.sampling.batch_size = config.eval.batch_size = 2
  config.eval.feature_net = ""
  if config.training.loss == "consistency_distillation":    # no trained teacher here: the
    config.training.loss = "consistency_training"          # network is built all the same
  a = config.sampling.autoguidance                           # nor a trained weak model
  a.workdir, a.weight = "", 1.0
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
                   "configs/fashion_mnist/vp_ddpm_cpu.py", "configs/fashion_mnist/vp_ddpm_gpu.py",
                   *(f"configs/ve/ncsn/{data}_{techniques}.py" for data in ("cifar10", "celeba")
                     for techniques in ("124", "1245", "5")),
                   "configs/vp/ddpm/cifar10_unconditional.py"]:
    assert expected in names


# NCSN's six NCSNv2-technique ablations have ve/ncsn/{cifar10,celeba}'s network with other
# level counts (their settings: test_ncsn_ablations_have_score_sdes_settings): slow tier.
NCSN_ABLATIONS = {f"configs/ve/ncsn/{data}_{techniques}.py": (levels, sigma_max, n_steps, snr, ema)
                  for data, levels, sigma_max, snr in (("cifar10", 232, 50.0, 0.176),
                                                       ("celeba", 500, 90.0, 0.128))
                  for techniques, levels, sigma_max, n_steps, snr, ema in (
                      ("124", levels, sigma_max, 5, snr, 0.0),
                      ("1245", levels, sigma_max, 5, snr, 0.999),
                      ("5", 10, 1.0, 100, 0.316, 0.999))}


@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.slow)
                                  if p in NCSN_ABLATIONS else p for p in IMAGE_CONFIGS])
def test_image_config_builds_and_maps_images_to_images(path):
  exp = build.build(tiny(path))
  x = jnp.zeros((2, *exp.data.example_shape))
  params = jax.eval_shape(lambda: exp.model.init(jax.random.PRNGKey(0), x, jnp.zeros((2,))))
  out = jax.eval_shape(lambda p: exp.model.apply(p, x, jnp.zeros((2,))), params)
  assert out.shape == x.shape and out.dtype == jnp.float32


def _family(path):
  """What decides a network's code path: the network, its blocks, pyramids, embedding."""
  m = tiny(path).model
  return tuple(m.get(k) for k in ("name", "resblock_type", "progressive", "progressive_input",
                                  "embedding_type", "conditional", "fir"))


FAMILIES = sorted({_family(p): p for p in reversed(IMAGE_CONFIGS)}.values())


def test_families_cover_every_config():
  assert {_family(p) for p in FAMILIES} == {_family(p) for p in IMAGE_CONFIGS}
  assert len(FAMILIES) < len(IMAGE_CONFIGS)


@pytest.mark.slow
@pytest.mark.parametrize("path, objective", [
    *((p, "dsm") for p in FAMILIES),
    *((p, "ssm") for p in ("configs/fashion_mnist/edm_ddpm_cpu.py", "configs/ve/ncsnv2/bedroom.py",
                           "configs/ve/cifar10_ncsnpp_continuous.py"))])
def test_one_config_per_network_family_runs_one_train_step(path, objective):
  """A real step per family (each config's network is built and shape-checked above) with
  DSM; and SSM's forward-mode JVPs (ISM's Hutchinson path is the same) through the three
  kinds of layers: DDPM++ (the CPU U-Net), NCSNv2's RefineNet and NCSN++'s FIR resampling
  (30-70 s each on 2 CPU cores; NCSN, the deep and the 256 px NCSN++ are 80-110 s)."""
  config = tiny(path)
  config.training.objective = objective
  exp = build.build(config)
  state = exp.init_state(jax.random.PRNGKey(0))
  batch = jax.random.uniform(jax.random.PRNGKey(0), (1, 2, *exp.data.example_shape))
  state, metrics = exp.train_step(state, batch, jax.random.PRNGKey(1), None)
  assert int(state.step) == 1 and np.isfinite(float(metrics["loss"]))


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="a CPU-only choice of build.py")
def test_steps_of_networks_with_convolutions_are_unrolled_on_the_cpu():
  """n_jitted_steps > 1: the steps of a network with convolution kernels are compiled one
  after another (XLA:CPU's convolution gradients in loops are slow), an MLP's in a loop."""
  from configs.toy import vp_gmm  # pylint: disable=g-import-not-at-top
  for config, convolutional in ((tiny("configs/vp/ddpm/cifar10.py"), True),
                                (vp_gmm.get_config(), False)):
    t = config.training
    t.n_jitted_steps, t.n_iters, t.log_freq, t.eval_freq = 2, 10, 2, 2
    t.snapshot_freq = t.snapshot_freq_for_preemption = t.posthoc_ema.snapshot_freq = 2
    exp = build.build(config)
    batch = jax.ShapeDtypeStruct((2, t.batch_size, *exp.data.example_shape), jnp.float32)
    jaxpr = exp.train_step.trace(exp.abstract_state, batch, jax.random.PRNGKey(0), None).jaxpr
    (scan,) = [eqn for eqn in jaxpr.eqns if eqn.primitive.name == "scan"]
    assert scan.params["unroll"] == (2 if convolutional else 1), config.model.name


def test_ncsn_needs_a_table_row_per_noise_level():
  from configs.ve.ncsn import cifar10  # pylint: disable=g-import-not-at-top
  config = cifar10.get_config()
  config.sde.num_scales = 11
  with pytest.raises(run.RunError, match="noise_levels=10 must equal config.sde.num_scales=11"):
    build.build(config)
  config = cifar10.get_config()
  config.model.noise_conditioning = "log_sigma"
  with pytest.raises(run.RunError, match="needs config.model.noise_conditioning='level_index'"):
    build.build(config)


@pytest.mark.parametrize("path", sorted(NCSN_ABLATIONS))
def test_ncsn_ablations_have_score_sdes_settings(path):
  """score_sde's ve/ncsn/<data>_{124,1245,5}.py: levels, sigma_max, ALD steps per level,
  snr and EMA (sigma_min 0.01, lr 1e-3 as NCSN's); a table row per level."""
  import importlib  # pylint: disable=g-import-not-at-top
  c = importlib.import_module(path[:-3].replace("/", ".")).get_config()
  assert (c.sde.num_scales, c.sde.sigma_max, c.sampling.pc.n_steps, c.sampling.pc.snr,
          c.model.ema_rate) == NCSN_ABLATIONS[path]
  assert (c.sde.sigma_min, c.optim.lr, c.model.noise_levels, c.sampling.pc.corrector) == (
      0.01, 1e-3, c.sde.num_scales, "ald")

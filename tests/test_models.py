"""Image networks: parameter counts at the published configurations, FIR resampling
against scipy, and every network's output shape, dtype variants and one train step."""
import dataclasses
import functools
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import signal

import datasets
import ema
import losses
import models
from run import build
import sde_lib
from models import ddpm
from models import ncsnpp
from models import ncsnv2
from models import normalization
from models import up_or_down_sampling as updown
from models import parameterizations

# Parameter counts of the published configurations. References:
#   [D]  Ho et al. (2020), "35.7M" for CIFAR-10 and "114M" for the 256 px models; the exact
#        CIFAR-10 numbers are diffusers.UNet2DModel's for the same architecture (full and
#        half width, see benchmarks/unet.py).
#   [S]  the reference implementation yang-song/score_sde (JAX), its `models/` at the same
#        config file, counted with jax.eval_shape (GaussianFourierProjection's fixed W
#        included, as it is a parameter there).
#   [N]  Song & Ermon (2019)'s own code, ermongroup/ncsn `models/cond_refinenet_dilated.py`
#        CondRefineNetDilated (ngf 128, 10 levels, 3 channels), counted with torch
#        (score_sde's NCSN cannot be initialized: docs/score_sde_port.md).
PUBLISHED_COUNTS = {
    "vp/ddpm/cifar10.py": 35_746_307,                     # [D]
    "vp/ddpm/bedroom.py": 113_673_219,                    # [D] "114M"
    "ve/cifar10_ncsnpp_continuous.py": 62_758_915,        # [S]
    "ve/cifar10_ncsnpp_deep_continuous.py": 107_587_075,  # [S]
    "ve/cifar10_ncsnpp.py": 62_693_251,                   # [S]
    "vp/cifar10_ddpmpp_continuous.py": 61_804_419,        # [S]
    "vp/cifar10_ddpmpp_deep_continuous.py": 106_632_579,  # [S]
    "subvp/cifar10_ncsnpp_deep_continuous.py": 107_521_411,  # [S]
    "ve/celebahq_256_ncsnpp_continuous.py": 65_574_549,   # [S]
    "ve/ffhq_ncsnpp_continuous.py": 105_785_896,          # [S] (1024 px)
    "ve/ncsnv2/cifar10.py": 33_970_563,                   # [S]
    "ve/ncsnv2/bedroom.py": 83_445_379,                   # [S] (128 px)
    "ve/ncsn/cifar10.py": 30_117_635,                     # [N]
}


def _config(path):
  return importlib.import_module("configs." + path[:-3].replace("/", ".")).get_config()


@pytest.mark.parametrize("path", sorted(PUBLISHED_COUNTS))
def test_parameter_count_equals_the_published_model(path):
  config = _config(path)
  exp = build.build(config)
  assert models.count_params(exp.model, (1, *exp.data.example_shape)) == PUBLISHED_COUNTS[path]


def test_ddpm_half_width_count_equals_the_peer():
  # diffusers.UNet2DModel, block_out_channels (64, 128, 128, 128), single-head attention.
  assert models.count_params(ddpm.DDPM(ddpm.DDPMConfig(nf=64)), (1, 32, 32, 3)) == 8_952_067


def _scipy_upfirdn2d(x, k1d, up, down):
  """Separable reference: scipy.signal.upfirdn along H, then along W ([B, H, W, C])."""
  y = np.apply_along_axis(lambda v: signal.upfirdn(k1d, v, up, down), 1, x)
  return np.apply_along_axis(lambda v: signal.upfirdn(k1d, v, up, down), 2, y)


@pytest.mark.parametrize("up,down", [(1, 1), (2, 1), (1, 2), (3, 2)])
def test_upfirdn2d_equals_scipy(up, down):
  x = np.random.default_rng(0).normal(size=(2, 9, 9, 3)).astype(np.float32)
  k = np.array([1.0, 3.0, 3.0, 1.0], np.float32) / 8.0
  ours = updown.upfirdn2d(jnp.asarray(x), np.outer(k, k), up=up, down=down,
                          pad=(len(k) - 1, len(k) - up))   # scipy's full convolution
  expected = _scipy_upfirdn2d(x, k, up, down)
  np.testing.assert_allclose(np.asarray(ours), expected, atol=1e-5)


def test_fir_resampling_keeps_constants_and_fused_convs_match_the_unfused_ones():
  ones = jnp.ones((1, 16, 16, 2))
  np.testing.assert_allclose(updown.upsample_2d(ones)[:, 2:-2, 2:-2], 1.0, rtol=1e-6)
  np.testing.assert_allclose(updown.downsample_2d(ones)[:, 1:-1, 1:-1], 1.0, rtol=1e-6)
  key_x, key_w = jax.random.split(jax.random.PRNGKey(0))
  x = jax.random.normal(key_x, (2, 12, 12, 3))
  w = jax.random.normal(key_w, (3, 3, 3, 5))
  conv = lambda v: jax.lax.conv_general_dilated(v, w, (1, 1), "SAME",
                                                dimension_numbers=("NHWC", "HWIO", "NHWC"))
  # Both are linear and shift-invariant on the fine grid, so they commute away from
  # the border (3 px of support on each side).
  fused_up, unfused_up = updown.upsample_conv_2d(x, w), conv(updown.upsample_2d(x))
  assert fused_up.shape == unfused_up.shape == (2, 24, 24, 5)
  np.testing.assert_allclose(fused_up[:, 3:-3, 3:-3], unfused_up[:, 3:-3, 3:-3], atol=1e-4)
  fused_down = updown.conv_downsample_2d(x, w)
  unfused_down = updown.downsample_2d(conv(x))
  assert fused_down.shape == unfused_down.shape == (2, 6, 6, 5)
  np.testing.assert_allclose(fused_down[:, 2:-2, 2:-2], unfused_down[:, 2:-2, 2:-2], atol=1e-4)


TINY_NCSNPP = ncsnpp.NCSNppConfig(nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,),
                                  dropout=0.1)
TINY = {
    "ddpm": ddpm.DDPM(ddpm.DDPMConfig(nf=32, ch_mult=(1, 2), num_res_blocks=1,
                                      attn_resolutions=(8,))),
    "ncsnpp": ncsnpp.NCSNpp(TINY_NCSNPP),
    "ddpmpp": ncsnpp.NCSNpp(dataclasses.replace(
        TINY_NCSNPP, fir=False, progressive_input="none", embedding_type="positional")),
    "ncsnpp_skip_pyramids": ncsnpp.NCSNpp(dataclasses.replace(
        TINY_NCSNPP, resblock_type="ddpm", progressive="output_skip",
        progressive_input="input_skip", progressive_combine="cat")),
    "ncsnpp_residual_pyramids": ncsnpp.NCSNpp(dataclasses.replace(
        TINY_NCSNPP, progressive="residual", progressive_input="residual")),
    "ncsnv2": ncsnv2.NCSNv2(ncsnv2.NCSNv2Config(nf=8)),
    "ncsn": ncsnv2.NCSNv2(ncsnv2.NCSNv2Config(nf=8, conditional=True)),
}


@pytest.mark.parametrize("shape,groups", [((4, 8, 8, 64), 32), ((3, 7, 7, 16), 8),
                                          ((2, 5, 96), 32), ((4, 12), 4)])
def test_group_norm_equals_flax_in_values_and_gradients(shape, groups):
  """normalization.GroupNorm takes its moments per channel, then per group; its
  parameters, values and gradients (x, scale, bias) are flax.linen.GroupNorm's. The data
  have per-channel offsets and scales, so a grouping of the wrong channels (interleaved
  instead of contiguous), a per-channel instead of a per-group statistic or a biased
  epsilon would all differ by far more than the tolerance."""
  import flax.linen as nn   # pylint: disable=g-import-not-at-top
  keys = jax.random.split(jax.random.PRNGKey(0), 4)
  channels = shape[-1]
  per_channel = lambda lo, hi: jnp.linspace(lo, hi, channels).reshape((1,) * (len(shape) - 1)
                                                                      + (channels,))
  x = jax.random.normal(keys[0], shape) * per_channel(0.5, 3.0) + per_channel(-2.0, 2.0)
  ours, theirs = normalization.GroupNorm(groups), nn.GroupNorm(groups, epsilon=1e-6)
  params = ours.init(keys[1], x)
  assert (jax.tree_util.tree_map(jnp.shape, params)
          == jax.tree_util.tree_map(jnp.shape, theirs.init(keys[1], x)))
  params = {"params": {"scale": 1 + 0.3 * jax.random.normal(keys[2], (channels,)),
                       "bias": 0.3 * jax.random.normal(keys[3], (channels,))}}
  weights = jnp.cos(jnp.arange(x.size).reshape(shape))
  loss = lambda module: lambda p, x: jnp.sum(jnp.tanh(module.apply(p, x)) * weights)
  values_and_grads = lambda module: jax.jit(lambda p, x: (module.apply(p, x),
                                                          jax.grad(loss(module), (0, 1))(p, x)))
  (y_ours, g_ours), (y_theirs, g_theirs) = (values_and_grads(m)(params, x) for m in (ours, theirs))
  np.testing.assert_allclose(y_ours, y_theirs, atol=2e-5)
  for a, b in zip(jax.tree_util.tree_leaves(g_ours), jax.tree_util.tree_leaves(g_theirs)):
    np.testing.assert_allclose(a, b, atol=1e-4 * float(jnp.max(jnp.abs(b))))
  out = jax.jit(normalization.GroupNorm(groups, dtype=jnp.bfloat16).apply)(params, x)
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(out.astype(jnp.float32), y_theirs, atol=0.05)
  with pytest.raises(ValueError, match="num_groups=5 does not divide"):
    normalization.GroupNorm(5).init(keys[1], x)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TINY))
def test_network_output_shape_and_one_train_step(name):
  model = TINY[name]
  x = jax.random.uniform(jax.random.PRNGKey(1), (4, 16, 16, 3))
  c_noise = jnp.linspace(-3.0, 2.0, 4)
  params = init_params(model, x, c_noise)
  out = jax.jit(model.apply)(params, x, c_noise)
  assert out.shape == x.shape and out.dtype == jnp.float32
  assert np.all(np.isfinite(np.asarray(out)))

  sde = sde_lib.VPSDE()
  optimizer = optax.adam(1e-3)

  def loss_fn(p, x0, key):
    apply_fn = lambda q, v, c: model.apply(q, v, c, train=True,
                                           rngs={"dropout": jax.random.fold_in(key, 1)})
    return losses.sde_loss(parameterizations.get_score_fn(apply_fn, p, sde), sde, x0, key, reduce_mean=True)

  step = jax.jit(losses.get_train_step(loss_fn, optimizer, ema.decay_fn(0.9)))
  state = losses.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                            opt_state=optimizer.init(params), ema_params=params)
  new_state, metrics = step(state, x[None], jax.random.PRNGKey(2))
  assert int(new_state.step) == 1 and np.isfinite(float(metrics["loss"]))
  moved = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)), params, new_state.params)
  assert any(jax.tree_util.tree_leaves(moved))


def perturbed(params, scale):
  """Every weight moved by scale x N(0, 1), drawn by numpy: XLA:CPU takes ~20 s to compile
  a program of a few hundred random-number calls."""
  rng = np.random.default_rng(3)
  return jax.tree.map(lambda p: p + np.float32(scale) * rng.standard_normal(p.shape, np.float32),
                      params)


def init_params(model, *inputs):
  """model.init compiled without XLA's backend optimizations, as run/build.py compiles
  init_state on the CPU (tests/test_experiment.py checks the values agree to rounding)."""
  options = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else {}
  return jax.jit(model.init, compiler_options=options)(jax.random.PRNGKey(0), *inputs)


@pytest.mark.slow   # compile-bound (minutes on 2 cores)
def test_conditioning_reaches_the_output():
  # NCSNv2 never sees the noise level; NCSN and the U-Nets must.
  x = jnp.tile(jax.random.uniform(jax.random.PRNGKey(1), (1, 16, 16, 3)), (2, 1, 1, 1))
  for name, expect_change in (("ncsn", True), ("ncsnv2", False), ("ncsnpp", True)):
    model = TINY[name]
    params = init_params(model, x, jnp.zeros((1,)))
    # Zero-initialized output layers would hide the conditioning: perturb all weights.
    params = perturbed(params, 0.1)
    a, b = jax.jit(model.apply)(params, x, jnp.array([-2.0, 1.0]))   # same image, two levels
    assert bool(jnp.any(jnp.abs(a - b) > 1e-4)) == expect_change, name


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ddpm", "ncsnpp"])
def test_remat_matches_and_bfloat16_is_close(name):
  model = TINY[name]
  x = jax.random.uniform(jax.random.PRNGKey(1), (2, 16, 16, 3))
  c_noise = jnp.array([-1.0, 0.5])
  params = init_params(model, x, c_noise)
  params = perturbed(params, 0.05)
  remat = type(model)(dataclasses.replace(model.config, remat=True))
  bf16 = type(model)(dataclasses.replace(model.config, dtype="bfloat16"))
  loss = lambda m, p: jnp.sum(m.apply(p, x, c_noise) ** 2)
  value, grads = jax.jit(jax.value_and_grad(lambda p: loss(model, p)))(params)
  value_remat, grads_remat = jax.jit(jax.value_and_grad(lambda p: loss(remat, p)))(params)
  np.testing.assert_allclose(value_remat, value, rtol=1e-6)
  # Recomputation reorders float32 sums: equal to rounding, relative to the gradient's scale.
  flat = lambda g: np.concatenate([np.ravel(v) for v in jax.tree_util.tree_leaves(g)])
  scale = float(np.abs(flat(grads)).max())
  np.testing.assert_allclose(flat(grads_remat), flat(grads), atol=1e-5 * scale)
  assert jax.eval_shape(lambda: bf16.init(jax.random.PRNGKey(0), x, c_noise)) == \
      jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, c_noise))   # float32 params
  out, out_bf16 = jax.jit(model.apply)(params, x, c_noise), jax.jit(bf16.apply)(params, x, c_noise)
  assert out_bf16.dtype == jnp.float32
  # bfloat16 keeps 8 mantissa bits: relative error ~ 2^-8 per op, a few % end to end.
  rel = float(jnp.linalg.norm(out_bf16 - out) / jnp.linalg.norm(out))
  assert 0.0 < rel < 0.05


@pytest.mark.parametrize("parameterization", parameterizations.PARAMETERIZATIONS)
@pytest.mark.parametrize("sde", [sde_lib.VPSDE(), sde_lib.VESDE(sigma_min=0.01, sigma_max=20.0),
                                 sde_lib.RectifiedFlow()], ids=["vp", "ve", "rf"])
def test_each_parameterization_turns_its_exact_target_into_the_exact_score(parameterization, sde):
  """A network that outputs the parameterization's exact target (computed from the
  mixture's exact score by Tweedie: E[x_0 | x], E[z | x] = -sigma s) gives the exact
  score back; "edm" and "consistency" feed it c_in x / alpha. The "v" and "flow" targets are the
  published definitions: a z - b x_0 (a^2 + b^2 = 1) and d/dt (alpha x_0 + sigma z)."""
  gmm = datasets.gaussian_mixture()
  x = gmm.sample(jax.random.PRNGKey(0), 6) * 1.5
  t = jnp.linspace(0.05, 0.95, 6) * sde.T
  alpha, sigma = sde.marginal(t)
  score = gmm.score_fn(sde)(x, t)
  denoised = (x + sigma[:, None] ** 2 * score) / alpha[:, None]        # Tweedie
  noise = -sigma[:, None] * score
  s_d, sigma_hat = 0.7, sigma / alpha
  c_skip = s_d**2 / (sigma_hat**2 + s_d**2)
  c_out = sigma_hat * s_d / jnp.sqrt(sigma_hat**2 + s_d**2)
  # consistency models' (Song et al., 2023), with the boundary at t = 1e-3 (the default)
  sigma_hat_min = float(jnp.exp(-sde.log_snr(jnp.full((1,), 1e-3)))[0])
  c_skip_cm = s_d**2 / ((sigma_hat - sigma_hat_min) ** 2 + s_d**2)
  c_out_cm = s_d * (sigma_hat - sigma_hat_min) / jnp.sqrt(s_d**2 + sigma_hat**2)
  r = jnp.sqrt(alpha**2 + sigma**2)[:, None]
  d_alpha, d_sigma = jax.vmap(jax.jacfwd(sde.marginal))(t)
  targets = {"noise": noise, "scaled_score": sigma[:, None] * score, "score": score,
             "data": denoised,
             "edm": (denoised - c_skip[:, None] * x / alpha[:, None]) / c_out[:, None],
             "v": (alpha[:, None] * noise - sigma[:, None] * denoised) / r,
             "flow": d_alpha[:, None] * denoised + d_sigma[:, None] * noise,
             "consistency": (denoised - c_skip_cm[:, None] * x / alpha[:, None])
                            / c_out_cm[:, None]}
  inputs = []

  def apply_fn(params, x_in, c_noise):
    del params, c_noise
    inputs.append(x_in)
    return targets[parameterization]

  score_fn = parameterizations.get_score_fn(apply_fn, None, sde, parameterization, sigma_data=s_d)
  np.testing.assert_allclose(score_fn(x, t), score, rtol=2e-4, atol=2e-4 * float(jnp.abs(score).max()))
  if parameterization in ("edm", "consistency"):
    expected_in = x / jnp.sqrt(sigma**2 + alpha**2 * s_d**2)[:, None]
    np.testing.assert_allclose(inputs[-1], expected_in, rtol=1e-5)


def test_center_input_feeds_the_network_two_x_minus_one():
  """score_sde's networks on [0, 1] data map x to 2 x - 1 themselves; `center_input` does it
  before the network, after `scale_input`."""
  sde = sde_lib.VESDE(sigma_min=0.01, sigma_max=50.0)
  x, t = jnp.linspace(0.0, 1.0, 8).reshape(4, 2), jnp.full((4,), 0.3)
  seen = []
  score_fn = parameterizations.get_score_fn(lambda p, v, c: seen.append(v) or v, None, sde, "scaled_score",
                                 scale_input=False, center_input=True)
  np.testing.assert_allclose(score_fn(x, t), (2 * x - 1) / sde.marginal(t)[1][:, None], rtol=1e-6)
  np.testing.assert_allclose(seen[-1], 2 * x - 1)


def test_edm_bounds_the_x0_error_where_noise_prediction_amplifies_it():
  """The same output error delta, at VP t = 0.95 (alpha = 0.010): x_0 error c_out delta
  <= sigma_data delta for "edm", (sigma / alpha) delta ~ 100 delta for "noise"."""
  sde, x, t, delta = sde_lib.VPSDE(), jnp.zeros((1, 4)), jnp.array([0.95]), 0.1
  alpha, sigma = sde.marginal(t)
  errors = {}
  for parameterization in ("noise", "edm"):
    exact = parameterizations.get_score_fn(lambda p, v, c: jnp.zeros_like(v), None, sde, parameterization)
    off = parameterizations.get_score_fn(lambda p, v, c: jnp.full_like(v, delta), None, sde, parameterization)
    # x_0 estimate (x + sigma^2 s) / alpha: its error is sigma^2 / alpha times the score's.
    errors[parameterization] = float(jnp.abs(off(x, t) - exact(x, t)).max() * sigma[0]**2 / alpha[0])
  assert errors["edm"] <= 0.5 * delta * (1 + 1e-5)
  np.testing.assert_allclose(errors["noise"], float(sigma[0] / alpha[0]) * delta, rtol=1e-5)
  assert errors["noise"] > 100 * errors["edm"]


def test_class_labels_need_a_conditional_ddpm():
  with pytest.raises(ValueError, match="num_label_classes=10 .* model.conditional=True"):
    ddpm.DDPMConfig(num_label_classes=10, conditional=False)


def test_ncsn_normalization_uses_the_row_of_its_noise_level():
  """NCSN's conditional InstanceNorm++ as published: gamma (h + alpha means_plus) + beta
  with (gamma, alpha, beta) the table row of each example's level."""
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 4, 4, 5)) * jnp.arange(1.0, 6.0)[None, None, None]
  level = jnp.array([2, 0, 6])
  norm = normalization.LevelInstanceNormPlus(num_levels=7)
  params = {"params": {"embedding": 1.0 + jax.random.normal(jax.random.PRNGKey(1), (7, 15))}}
  assert jax.tree_util.tree_map(jnp.shape, jax.eval_shape(norm.init, jax.random.PRNGKey(1), x,
                                                          level)) == \
      jax.tree_util.tree_map(jnp.shape, params)
  out = jax.jit(norm.apply)(params, x, level)
  table = np.asarray(params["params"]["embedding"])[np.asarray(level)]
  gamma, alpha, beta = (v[:, None, None, :] for v in np.split(table, 3, axis=-1))
  xn = np.asarray(x, np.float64)
  means = xn.mean(axis=(1, 2))
  means_plus = (means - means.mean(-1, keepdims=True)) / np.sqrt(means.var(-1, keepdims=True)
                                                                  + 1e-5)
  h = (xn - means[:, None, None, :]) / np.sqrt(xn.var(axis=(1, 2), keepdims=True) + 1e-5)
  np.testing.assert_allclose(out, gamma * (h + alpha * means_plus[:, None, None, :]) + beta,
                             rtol=1e-4, atol=1e-5)

"""Class-conditional networks and runs: labels reach the network, the null label is the
unconditional model, label dropout, guided sampling from the config, and bad input."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models
from models import classifier as classifier_lib
import run
from infra import weights
from run import build
from run import classifier
from run import evaluate
from run import train
from configs.toy import vp_gmm
from tests import test_image_training


@pytest.mark.parametrize("name, shape, extra", [
    ("mlp", (4, 2), {}),
    ("ddpm", (4, 8, 8, 1), dict(nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,),
                                num_groups=4)),
    ("ncsnpp", (4, 8, 8, 1), dict(nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,))),
    ("ncsnv2", (4, 8, 8, 1), dict(nf=8)),
    pytest.param("ncsnv2", (4, 8, 8, 1), dict(nf=8, conditional=True), marks=pytest.mark.slow),
])
def test_labels_reach_every_conditional_network(name, shape, extra):
  model = models.get_model(name, num_label_classes=3, **extra)
  x, c = jax.random.normal(jax.random.PRNGKey(0), shape), jnp.linspace(0.1, 0.9, 4)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(1), x, c)
  assert shapes["params"]["label_embedding"]["embedding"].shape[0] == 4    # 3 classes + null

  # Random weights everywhere (initialized output layers are zero); numpy draws them on the
  # host at once, where a jitted jax.random per leaf takes seconds to compile.
  rng = np.random.default_rng(2)
  params = jax.tree_util.tree_map(lambda s: 0.3 * rng.normal(size=s.shape).astype(np.float32),
                                  shapes)
  forward = jax.jit(lambda labels: model.apply(params, x, c, labels=labels))
  forward_null = jax.jit(lambda: model.apply(params, x, c))
  apply = lambda labels: forward_null() if labels is None else forward(labels)
  null = apply(jnp.full((4,), 3))
  np.testing.assert_allclose(apply(None), null, atol=1e-5 * float(jnp.abs(null).max()))
  assert float(jnp.abs(apply(jnp.zeros(4, jnp.int32)) - null).max()) > 1e-3 * float(jnp.abs(null).max())
  with pytest.raises(ValueError, match="unconditional network"):
    unconditional = models.get_model(name, **extra)
    jax.eval_shape(lambda: unconditional.init(jax.random.PRNGKey(1), x, c,
                                              labels=jnp.zeros(4, int)))


def _conditional_config(data_dir):
  config = test_image_training.small_config(data_dir)
  config.model.num_label_classes = 10
  config.training.label_dropout = 0.2
  config.training.n_iters = config.training.snapshot_freq = 4
  config.training.snapshot_freq_for_preemption = 4
  config.sampling.method, config.sampling.batch_size = "ddim", 8
  config.sampling.class_label, config.sampling.guidance_scale = 7, 2.0
  config.sampling.guidance_interval = (0.2, 0.8)
  return config


@pytest.mark.slow        # ~45 s: keeps `make test` under 10 minutes
@pytest.mark.xdist_group("fashion_mnist")
def test_conditional_fashion_mnist_trains_and_samples_with_guidance(fashion_mnist_dir, tmp_path):
  exp = build.build(_conditional_config(fashion_mnist_dir))
  state, history = train.train(exp, str(tmp_path))
  assert len(history) == 4 and np.all(np.isfinite(history))
  assert np.isfinite(evaluate.held_out_loss(exp, state.ema_params))
  x, nfe = exp.sample(state.ema_params, jax.random.PRNGKey(0))
  assert x.shape == (8, 28, 28, 1) and np.all(np.isfinite(x)) and int(nfe) == 11
  # The guided score: (1 + w) s(x, t, 7) - w s(x, t, null) inside the interval.
  xt, t = jnp.asarray(exp.data.held_out[:2]), jnp.array([0.5, 0.9])
  s_c = exp.score_fn(state.params, labels=jnp.full((2,), 7))(xt, t)
  s_u = exp.score_fn(state.params)(xt, t)
  guided = exp.sampling_score_fn(state.params)(xt, t)
  np.testing.assert_allclose(guided[0], 3 * s_c[0] - 2 * s_u[0], rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(guided[1], s_c[1], rtol=1e-5, atol=1e-5)      # t = 0.9: outside


@pytest.mark.xdist_group("fashion_mnist")
def test_bad_labels_name_the_value(fashion_mnist_dir):
  def fails(match, **changes):
    config = _conditional_config(fashion_mnist_dir)
    for key, value in changes.items():
      section, name = key.split("__")
      config[section][name] = value
    with pytest.raises(run.RunError, match=match):
      build.build(config)

  fails("class_label=10: valid are -1 \\(none\\) and 0 ... 9", sampling__class_label=10)
  fails("guidance_scale=2.0 needs a class", sampling__class_label=-1)
  fails("label_dropout=1.0: must be in \\[0, 1\\)", training__label_dropout=1.0)
  fails("class_label=7: valid are -1 \\(none\\); class labels need a class-conditional",
        model__num_label_classes=0, training__label_dropout=0.0)
  fails("guidance_interval=\\(0.5,\\)", sampling__guidance_interval=(0.5,))
  toy = vp_gmm.get_config()
  toy.model.num_label_classes = 3
  with pytest.raises(run.RunError, match="needs labelled image data"):
    build.build(toy)


@pytest.mark.slow
@pytest.mark.xdist_group("fashion_mnist")
def test_classifier_guidance_adds_the_scaled_classifier_gradient(fashion_mnist_dir, tmp_path):
  """The guided score is s(x, t) + scale grad_x log p_t(c | x) of the classifier's
  parameters (random here), with labels [B] replacing sampling.class_label row by row;
  a workdir without a classifier is a one-line error naming the command."""
  config = _conditional_config(fashion_mnist_dir)
  config.model.num_label_classes, config.training.label_dropout = 0, 0.0
  config.sampling.guidance_scale, config.sampling.guidance_interval = 0.0, ()
  config.sampling.class_label, config.sampling.classifier_scale = 3, 2.0
  exp = build.build(config)
  params = exp.init_state(jax.random.PRNGKey(0)).params
  clf = classifier_lib.NoiseConditionalCNN(num_classes=10).init(
      jax.random.PRNGKey(1), jnp.zeros((1, 28, 28, 1)), jnp.zeros((1,)))["params"]
  xt, t = jnp.asarray(exp.data.held_out[:2]), jnp.array([0.3, 0.7])

  @jax.jit
  def guided_and_expected():
    score = exp.score_fn(params)(xt, t)
    out = []
    for labels, rows in ((None, jnp.array([3, 3])), (jnp.array([5, 3]), jnp.array([5, 3]))):
      log_p = lambda x, rows=rows: jnp.sum(
          exp.class_log_prob_fn(clf)(x, t)[jnp.arange(2), rows])
      out.append((exp.sampling_score_fn(params, clf, labels)(xt, t),
                  score + 2.0 * jax.grad(log_p)(xt)))
    return out

  for guided, expected in guided_and_expected():
    np.testing.assert_allclose(guided, expected, rtol=1e-4, atol=1e-4)
  with pytest.raises(run.RunError, match="--mode train_classifier --workdir"):
    weights.classifier_params(exp, str(tmp_path))


def test_classifier_guidance_needs_a_class_and_labelled_data():
  config = vp_gmm.get_config()
  config.sampling.classifier_scale = 1.0
  with pytest.raises(run.RunError, match="classifier_scale=1.0 > 0 needs a class: set "
                                         "config.sampling.class_label"):
    build.build(config)
  config.sampling.class_label = 2
  with pytest.raises(run.RunError, match="needs labelled image data"):
    build.build(config)


@pytest.mark.slow
@pytest.mark.xdist_group("fashion_mnist")
def test_trained_classifier_is_accurate_at_low_noise_at_chance_at_T_and_guides_sampling(
    fashion_mnist_dir, tmp_path):
  """300 steps of --mode train_classifier on Fashion-MNIST: held-out accuracy (256
  images, each noised once) well above chance at t = 0.05 T (measured 0.80; the full
  3000-step run 0.877 on 10 000 images), falling with t, and at chance where the VP SDE has
  forgotten the data (alpha(T) = 0.0066), within 4 standard errors. Then --mode sample
  with classifier guidance reads it from the workdir, into its own folder; rounds of other
  settings are refused."""
  config = test_image_training.small_config(fashion_mnist_dir)
  config.classifier.n_iters = 300
  config.sampling.class_label, config.sampling.classifier_scale = 3, 2.0
  config.sampling.method, config.sampling.num_samples, config.sampling.batch_size = "ddim", 8, 8
  config.training.n_iters = config.training.snapshot_freq = 4
  config.training.snapshot_freq_for_preemption = 4
  exp = build.build(config)
  workdir = str(tmp_path)
  state, _ = train.train(exp, workdir)
  info = classifier.train_classifier(exp, workdir)
  accuracy, n = info["held_out_accuracy_at_t_over_T"], info["held_out_images"]
  se = lambda p: np.sqrt(p * (1 - p) / n)
  assert accuracy["0.05"] > 0.7, accuracy
  assert accuracy["0.05"] > accuracy["0.6"] + 4 * se(0.5) > accuracy["1"], accuracy
  assert abs(accuracy["1"] - 0.1) < 4 * se(0.1), accuracy
  out_dir = evaluate.sample(exp, workdir)
  assert out_dir.endswith("ddim_class3_classifier2")
  assert np.isfinite(np.load(os.path.join(out_dir, "round_00000.npz"))["samples"]).all()
  config.sampling.ddim.eta = 0.5
  with pytest.raises(run.RunError, match="other sampling settings"):
    evaluate.generate(build.build(config), state.ema_params, jax.random.PRNGKey(0), 8, out_dir)

"""Guidance and inpainting against the exact conditionals of a Gaussian mixture."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import controllable_generation as cg
import densities
import sampling
import sde_lib
from tests import stats

GMM = densities.GaussianMixture(jnp.array([[0.0, -3.0], [0.0, 3.0], [3.0, 0.0]]),
                                jnp.ones(3), jnp.array([0.2, 0.3, 0.5]))
SDE = sde_lib.get_sde("vpsde", N=1000)


def _points(n=64, seed=0):
  k_x, k_t = jax.random.split(jax.random.PRNGKey(seed))
  return 3 * jax.random.normal(k_x, (n, 2)), jax.random.uniform(k_t, (n,), minval=0.01)


def test_classifier_guidance_with_the_exact_classifier_is_the_class_score():
  # grad log p_t(x) + grad log p_t(c | x) = grad log p_t(x | c), exactly.
  x, t = _points()
  classifier = lambda x, t: GMM.log_responsibilities_t(SDE, x, t)
  for c in range(3):
    guided = cg.classifier_guidance(GMM.score_fn(SDE), classifier, c, scale=1.0)
    np.testing.assert_allclose(guided(x, t), GMM.component(c).score_fn(SDE)(x, t),
                               rtol=1e-4, atol=1e-4)
  # Scale 2 doubles the classifier term.
  guided = cg.classifier_guidance(GMM.score_fn(SDE), classifier, jnp.full((64,), 2), scale=2.0)
  want = 2 * GMM.component(2).score_fn(SDE)(x, t) - GMM.score_fn(SDE)(x, t)
  np.testing.assert_allclose(guided(x, t), want, rtol=1e-4, atol=1e-4)


def test_classifier_guidance_samples_exactly_the_class():
  """PC sampling with the guided exact score: component 1, N((0, 3), I), alone (its
  weight in the mixture is 0.3). 4000 samples: mean within 4 SE, variance within 4 SE
  (SE of a sample variance: sqrt(2 / n))."""
  classifier = lambda x, t: GMM.log_responsibilities_t(SDE, x, t)
  guided = cg.classifier_guidance(GMM.score_fn(SDE), classifier, 1)
  n = 4000
  x, _ = jax.jit(lambda k: sampling.get_pc_sampler(SDE, (n, 2), num_steps=500)(k, guided))(
      jax.random.PRNGKey(1))
  x = np.asarray(x)
  np.testing.assert_allclose(x.mean(0), [0.0, 3.0], atol=4 / np.sqrt(n))
  np.testing.assert_allclose(x.var(0), [1.0, 1.0], atol=4 * np.sqrt(2 / n))


def _class_score(x, t, y):
  """The exact class-conditional score; y = 3 (the null label) is the unconditional one."""
  scores = jnp.stack([GMM.component(c).score_fn(SDE)(x, t) for c in range(3)]
                     + [GMM.score_fn(SDE)(x, t)])                       # [4, B, D]
  return jnp.take_along_axis(scores, y[None, :, None], axis=0)[0]


def test_classifier_free_guidance():
  x, t = _points()
  s_cond, s_null = _class_score(x, t, jnp.zeros(64, jnp.int32)), GMM.score_fn(SDE)(x, t)
  unguided = cg.classifier_free_guidance(_class_score, 0, 0.0, null_label=3)
  np.testing.assert_allclose(unguided(x, t), s_cond, rtol=1e-6)
  guided = cg.classifier_free_guidance(_class_score, 0, 1.5, null_label=3)
  np.testing.assert_allclose(guided(x, t), 2.5 * s_cond - 1.5 * s_null, rtol=1e-5, atol=1e-5)
  # Guidance interval: the guided score inside [0.3, 0.6], the conditional one outside.
  window = cg.classifier_free_guidance(_class_score, 0, 1.5, null_label=3, interval=(0.3, 0.6))
  inside = ((t >= 0.3) & (t <= 0.6))[:, None]
  assert 0 < inside.sum() < 64
  np.testing.assert_allclose(window(x, t), jnp.where(inside, 2.5 * s_cond - 1.5 * s_null, s_cond),
                             rtol=1e-5, atol=1e-5)


def _inpainting_statistics(x):
  """(P(x2 < -1.5), P(|x2| <= 1.5), P(x2 > 1.5), E|x2|) of samples [n, 2]."""
  x2 = np.asarray(x)[:, 1]
  return np.array([np.mean(x2 < -1.5), np.mean(np.abs(x2) <= 1.5), np.mean(x2 > 1.5),
                   np.mean(np.abs(x2))])


def test_inpainting_against_the_exact_conditional():
  """x1 = 0 known: the exact conditional of x2 is a mixture of N(-3, 1), N(3, 1), N(0, 1)
  with weights 0.396 / 0.593 / 0.011 (`GaussianMixture.conditional`). Replacement
  (Song et al., 2021) with the reverse-diffusion predictor alone is biased and stays so
  as steps grow: it puts twice the mass near x2 = 0 (0.17 vs 0.076 at 100 to 3000 steps,
  4000 samples); a Langevin corrector step removes the bias (1.3 SE at 1000 steps), and
  so does RePaint's resampling (1.7 SE with 20 resamplings x 1000 steps);
  docs/results/inpainting_bias.md. Tolerances: 4 SE of each statistic (binomial, and the
  sample std of |x2|)."""
  n = 2000
  exact = GMM.conditional(jnp.zeros(1), 1)
  np.testing.assert_allclose(exact.weights, [0.3956, 0.5934, 0.0110], atol=1e-4)
  reference = _inpainting_statistics(np.c_[np.zeros(200_000), exact.sample(
      jax.random.PRNGKey(2), 200_000)])
  x_known, mask = jnp.zeros((n, 2)), jnp.array([1.0, 0.0])

  def run(method, resamplings, num_steps, corrector="none"):
    inpaint = cg.get_inpainter(SDE, (n, 2), method, resamplings, num_steps=num_steps,
                               corrector=corrector)
    x, nfe = jax.jit(lambda k: inpaint(k, GMM.score_fn(SDE), x_known, mask))(
        jax.random.PRNGKey(3))
    assert int(nfe) == resamplings * num_steps * (1 + (corrector != "none"))
    np.testing.assert_array_equal(np.asarray(x)[:, 0], 0.0)     # the known part, exactly
    return _inpainting_statistics(x)

  p = reference[:3]
  se = np.r_[np.sqrt(p * (1 - p) / n), 1.05 / np.sqrt(n)]
  replaced = run("replacement", 1, 500)
  assert replaced[1] - reference[1] > 8 * se[1], (replaced, reference)       # the known bias
  repainted = run("repaint", 20, 500)
  assert np.all(np.abs(repainted - reference) < 4 * se), (repainted, reference, se)
  corrected = run("replacement", 1, 1000, corrector="langevin")
  assert np.all(np.abs(corrected - reference) < 4 * se), (corrected, reference, se)


@pytest.mark.parametrize("basis", [None, "colour"])
def test_replacement_draws_the_known_part_diffused_to_t(basis):
  """Where mask == 1 the state becomes alpha(t) x_known + sigma(t) z, z ~ N(0, I), in the
  basis's coordinates (Song et al., 2021, Appendix I: a draw of p_0t(. | x_known)); the
  rest is kept. At t = 0.3 on VP, 2^16 draws of 3 coordinates: the known coordinates'
  mean within 4 SE of alpha x_known (SE sigma / sqrt(n)) and their variance within 4 SE of
  sigma^2 (SE sigma^2 sqrt(2 / n)); a replacement without the sigma z term has variance 0.
  Key None: the mean, exactly."""
  n, t = 2**16, jnp.full((2**16,), 0.3)
  b = None if basis is None else cg.color_basis()
  x_known = jnp.broadcast_to(jnp.array([0.5, -1.0, 2.0]), (n, 3))
  x = jax.random.normal(jax.random.PRNGKey(4), (n, 3))
  mask = jnp.array([1.0, 0.0, 1.0])
  to = (lambda v: v) if b is None else (lambda v: v @ b.T)
  replaced = to(cg.Replacement(SDE, x_known, mask, b)(jax.random.PRNGKey(5), x, t))
  alpha, sigma = (float(v[0]) for v in SDE.marginal(t))
  known = np.asarray(replaced, np.float64)[:, [0, 2]]
  want = alpha * np.asarray(to(x_known))[0, [0, 2]]
  np.testing.assert_allclose(known.mean(0), want, atol=stats.Z * sigma / np.sqrt(n))
  np.testing.assert_allclose(known.var(0), sigma**2, atol=stats.Z * sigma**2 * np.sqrt(2 / n))
  np.testing.assert_allclose(replaced[:, 1], to(x)[:, 1], rtol=1e-6, atol=1e-6)
  mean = to(cg.Replacement(SDE, x_known, mask, b)(None, x, t))
  np.testing.assert_allclose(mean[:, [0, 2]], alpha * to(x_known)[:, [0, 2]], rtol=1e-5,
                             atol=1e-6)


def test_colorization_keeps_the_grey_level():
  shape = (4, 2, 2, 3)
  basis = cg.color_basis()
  np.testing.assert_allclose(basis @ basis.T, np.eye(3), atol=1e-6)
  gray = jax.random.uniform(jax.random.PRNGKey(0), (4, 2, 2, 1), minval=-1, maxval=1)
  data = densities.GaussianMixture(jnp.zeros((1, 12)), jnp.ones(1), jnp.ones(1))
  flat_score = data.score_fn(SDE)
  score = lambda x, t: flat_score(x.reshape(4, 12), t).reshape(x.shape)
  colorize = cg.get_colorizer(SDE, shape, num_steps=100)
  x, _ = colorize(jax.random.PRNGKey(1), score, gray)
  np.testing.assert_allclose(x.mean(-1, keepdims=True), gray, atol=1e-5)
  assert float(jnp.std(x - gray)) > 0.1           # colour was sampled, not copied


def test_bad_input_names_the_value():
  with pytest.raises(ValueError, match="unknown class label 3; valid: 0 ... 2"):
    cg.classifier_free_guidance(_class_score, 3, 1.0, null_label=3)
  classifier = lambda x, t: GMM.log_responsibilities_t(SDE, x, t)
  x, t = _points(4)
  with pytest.raises(ValueError, match="unknown class label 5; valid: 0 ... 2"):
    cg.classifier_guidance(GMM.score_fn(SDE), classifier, 5)(x, t)
  with pytest.raises(ValueError, match="valid choices: \\['replacement', 'repaint'\\]"):
    cg.get_inpainter(SDE, (4, 2), method="ddrm")
  inpaint = cg.get_inpainter(SDE, (4, 2), num_steps=2, predictor="euler_maruyama")
  with pytest.raises(ValueError, match="mask of shape \\(3,\\) does not broadcast"):
    inpaint(jax.random.PRNGKey(0), GMM.score_fn(SDE), jnp.zeros((4, 2)), jnp.ones(3))
  with pytest.raises(ValueError, match="colorization needs 3 channels"):
    cg.get_colorizer(SDE, (4, 28, 28, 1))


def test_classifier_accuracy_of_the_exact_classifier():
  """cg.classifier_accuracy with the exact p_t(c | x) on 4000 labelled mixture draws: near
  the Bayes accuracy of the separated components (about 0.95) at t = 0.01 T, lower at
  0.5 T (alpha = 0.28 shrinks the separation to ~1.2 standard deviations), and at T, where
  the VP SDE has forgotten x_0, it predicts the heaviest class: accuracy = its frequency
  (0.5), within 4 SE."""
  n, rng = 4000, np.random.default_rng(0)
  labels = rng.choice(3, size=n, p=[0.2, 0.3, 0.5])
  x0 = np.asarray(GMM.means)[labels] + rng.standard_normal((n, 2))
  log_prob = lambda x, t: GMM.log_responsibilities_t(SDE, x, t)
  accuracy = cg.classifier_accuracy(log_prob, SDE, jax.random.PRNGKey(0), x0, labels,
                                    (0.01, 0.5, 1.0), batch_size=1000)
  se = np.sqrt(0.25 / n)
  assert accuracy["0.01"] > 0.9 and accuracy["0.01"] > accuracy["0.5"] + 4 * se, accuracy
  assert abs(accuracy["1"] - np.mean(labels == 2)) < 4 * se, accuracy


def test_completion_problems_show_what_is_known():
  images = np.random.default_rng(1).uniform(size=(2, 8, 8, 3)).astype(np.float32)
  get_sampler, (given, mask), known = cg.completion_problem("inpaint", images, "half", fill=-1.0)
  assert get_sampler is cg.get_inpainter and mask.shape == (8, 8, 1)
  np.testing.assert_array_equal(given, images)
  np.testing.assert_array_equal(known[:, :, :4], images[:, :, :4])     # the left half known
  assert np.all(known[:, :, 4:] == -1.0)
  get_sampler, (gray,), known = cg.completion_problem("colorize", images)
  assert get_sampler is cg.get_colorizer
  np.testing.assert_allclose(gray[..., 0], images.mean(-1))
  np.testing.assert_array_equal(known, np.repeat(gray, 3, -1))
  with pytest.raises(ValueError, match="colorize needs 3-channel images; this dataset has 1"):
    cg.completion_problem("colorize", images[..., :1])

"""Conditional sampling with an unconditional sampler: guided score functions and
constraints on the sampler's state.

* Guidance turns score functions into a score function, so every sampler works
  unchanged: `classifier_guidance` (s(x, t) + scale grad_x log p_t(c | x), Song et al.,
  2021, Appendix I; Dhariwal & Nichol, 2021) and `classifier_free_guidance`
  ((1 + w) s(x, t, c) - w s(x, t, null), Ho & Salimans, 2022) and `autoguidance`
  (s_weak + w (s - s_weak) with a weaker version of the same model, Karras et al., 2024).
* Inpainting and colorization (Song et al., 2021, Appendix I) constrain the state of the
  PC sampler: after every predictor and corrector step the known part is replaced by a
  draw of the known data diffused to the current time (`Replacement`), optionally with
  RePaint's resampling (Lugmayr et al., 2022): each step repeated R times, diffused back
  in between, so the unknown part can agree with the known one.

Shapes: x [B, ...], t [B]; labels an int or [B] ints; masks broadcast against x, 1 where
the value is known.
"""
import dataclasses
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

import sampling
import sde_lib

batch_broadcast = sde_lib.batch_broadcast


def _labels(label, x) -> jax.Array:
  return jnp.broadcast_to(jnp.asarray(label, jnp.int32), (x.shape[0],))


def classifier_guidance(score_fn, class_log_prob_fn, label, scale: float = 1.0):
  """score(x, t) + scale * grad_x log p_t(label | x), where class_log_prob_fn(x, t) ->
  [B, C] gives log p_t(c | x) of a noise-conditional classifier. At scale 1 with the
  exact classifier this is the exact score of p_t(x | label)."""

  def guided(x, t):
    y = _labels(label, x)

    def log_prob(x):
      log_probs = class_log_prob_fn(x, t)
      if isinstance(label, int) and not 0 <= label < log_probs.shape[-1]:
        raise ValueError(f"unknown class label {label}; valid: 0 ... {log_probs.shape[-1] - 1}")
      return jnp.sum(jnp.take_along_axis(log_probs, y[:, None], axis=1))

    return score_fn(x, t) + scale * jax.grad(log_prob)(x)

  return guided


def classifier_free_guidance(cond_score_fn, label, guidance_scale: float, null_label: int,
                             interval: Optional[tuple[float, float]] = None):
  """(1 + w) s(x, t, label) - w s(x, t, null_label) with cond_score_fn(x, t, y [B]); with
  `interval` = (t_lo, t_hi), w applies only for t in [t_lo, t_hi] (0 elsewhere: the
  conditional score). Labels are 0 ... null_label - 1 (the null label is the last one)."""
  if isinstance(label, (int, np.integer)) and not 0 <= label < null_label:
    raise ValueError(f"unknown class label {label}; valid: 0 ... {null_label - 1} "
                     f"({null_label} is the null label)")

  def guided(x, t):
    s_cond = cond_score_fn(x, t, _labels(label, x))
    s_null = cond_score_fn(x, t, _labels(null_label, x))
    w = jnp.full(t.shape, guidance_scale, x.dtype)
    if interval is not None:
      w = jnp.where((t >= interval[0]) & (t <= interval[1]), w, 0.0)
    return s_cond + batch_broadcast(w, x) * (s_cond - s_null)

  return guided


def autoguidance(score_fn, weak_score_fn, weight: float):
  """Autoguidance (Karras et al., 2024): the denoiser D_w = D_weak + w (D - D_weak), where
  weak_score_fn is a weaker version of score_fn's model (smaller, trained shorter, an
  earlier snapshot). Every model's denoiser is the same affine map of its score,
  D = (x + sigma(t)^2 s(x, t)) / alpha(t) (sampling.tweedie_denoise), so the rule is the
  same on scores: s_w = s_weak + w (s - s_weak). w = 1 is the main model alone; w > 1
  pushes the samples away from where the weak model puts mass the main one does not."""

  def guided(x, t):
    weak = weak_score_fn(x, t)
    return weak + weight * (score_fn(x, t) - weak)

  return guided


def noise_conditional_log_prob(logits_fn, sde: sde_lib.SDE, sigma_data: float):
  """class_log_prob_fn(x [B, ...], t [B]) -> log p_t(c | x) [B, C] of a noise-conditional
  classifier logits_fn(x_in, log_snr [B]) -> [B, C] that sees x_in = c_in(t) x with
  c_in = 1 / sqrt(alpha^2 sigma_data^2 + sigma^2) (unit scale) and log(alpha / sigma)."""

  def class_log_prob(x, t):
    alpha, sigma = sde.marginal(t)
    c_in = jax.lax.rsqrt(alpha**2 * sigma_data**2 + sigma**2)
    return jax.nn.log_softmax(logits_fn(batch_broadcast(c_in, x) * x, sde.log_snr(t)))

  return class_log_prob


def noised(sde: sde_lib.SDE, key, x0, t=None, min_time: float = 0.0):
  """(x_t, t) with x_t ~ p_t(x_t | x_0) and t [B] ~ U(min_time, T) unless given."""
  t_key, z_key = jax.random.split(key)
  if t is None:
    t = jax.random.uniform(t_key, x0.shape[:1], minval=min_time, maxval=sde.T)
  return sde.perturb(x0, t, jax.random.normal(z_key, x0.shape)), t


def classifier_loss(class_log_prob_fn, sde: sde_lib.SDE, x0, labels, key, min_time: float):
  """The noise-conditional classifier's objective: the cross-entropy -mean log p_t(c |
  x_t) of (x_0, c) pairs [B, ...], [B] at (x_t, t) = `noised`, t ~ U(min_time, T)."""
  x, t = noised(sde, key, x0, min_time=min_time)
  return -jnp.mean(jnp.take_along_axis(class_log_prob_fn(x, t), labels[:, None], 1))


def classifier_accuracy(class_log_prob_fn, sde: sde_lib.SDE, key, images, labels,
                        times, batch_size: int = 500) -> dict:
  """{f"{t / T:g}": accuracy of argmax p_t(c | x_t)} for t / T in `times`, over (images
  [N, ...], labels [N]) as numpy, each image noised once (key folded with its batch start)."""
  log_prob = jax.jit(class_log_prob_fn)
  accuracy = {}
  for fraction in times:
    correct = 0
    for start in range(0, len(images), batch_size):
      x0 = jnp.asarray(images[start:start + batch_size])
      x, t = noised(sde, jax.random.fold_in(key, start), x0,
                    jnp.full(x0.shape[:1], fraction * sde.T))
      predicted = np.argmax(np.asarray(log_prob(x, t)), axis=1)
      correct += int(np.sum(predicted == labels[start:start + batch_size]))
    accuracy[f"{fraction:g}"] = correct / len(images)
  return accuracy


def guided_score_fn(cond_score_fn, label, null_label: int = 0, guidance_scale: float = 0.0,
                    interval: Optional[tuple[float, float]] = None, class_log_prob_fn=None,
                    classifier_scale: float = 0.0):
  """The score of class `label` (an int or [B]) that the samplers use. cond_score_fn(x,
  t, y): a class-conditional network's score of labels y [B] (null_label > 0: its null
  label), with classifier-free guidance at guidance_scale (within `interval`); an
  unconditional network's (null_label 0) ignores y. Plus classifier guidance by
  class_log_prob_fn at classifier_scale > 0."""
  if null_label:
    score_fn = classifier_free_guidance(cond_score_fn, label, guidance_scale, null_label,
                                        interval)
  else:
    score_fn = lambda x, t: cond_score_fn(x, t, None)
  if classifier_scale:
    score_fn = classifier_guidance(score_fn, class_log_prob_fn, label, classifier_scale)
  return score_fn


def sampling_score_fn(score_fn, class_label: int, class_log_prob_fn=None,
                      autoguidance_weight: float = 1.0, weak_score_fn=None, **guidance):
  """score(params, classifier_params=None, labels=None, weak_params=None) -> s(x, t), the
  score the samplers use, from a network's score_fn(params, labels=None) -> s(x, t):
  unconditional for class_label < 0, else `guided_score_fn` (with **guidance) of the
  labels [B] (None: class_label), with classifier guidance by class_log_prob_fn(
  classifier_params) where given; with weak_params, `autoguidance` at autoguidance_weight
  by the same score of the weak model, whose network is weak_score_fn's (None: score_fn's)."""

  def class_score_fn(params, classifier_params, labels, network=score_fn):
    if class_label < 0:
      return network(params)
    return guided_score_fn(
        lambda x, t, y: network(params, labels=y)(x, t),
        class_label if labels is None else labels,
        class_log_prob_fn=(None if classifier_params is None
                           else class_log_prob_fn(classifier_params)), **guidance)

  def score(params, classifier_params=None, labels=None, weak_params=None):
    main = class_score_fn(params, classifier_params, labels)
    if weak_params is None:
      return main
    return autoguidance(main, class_score_fn(weak_params, classifier_params, labels,
                                             weak_score_fn or score_fn), autoguidance_weight)

  return score


@dataclasses.dataclass(frozen=True)
class Replacement:
  """The constraint of inpainting and colorization: where mask == 1, the coordinates of
  x, expressed in an orthonormal `basis` of the last axis (None: the identity), become
  alpha(t) x_known + sigma(t) z, a draw of the known data diffused to time t (key None:
  the noise-free alpha(t) x_known)."""
  sde: sde_lib.SDE
  x_known: jax.Array
  mask: jax.Array
  basis: Optional[jax.Array] = None     # [C, C] orthogonal; rows are the new coordinates

  def _to(self, x):
    return x if self.basis is None else x @ self.basis.T

  def _back(self, y):
    return y if self.basis is None else y @ self.basis

  def __call__(self, key, x, t):
    noise = jnp.zeros_like(x) if key is None else jax.random.normal(key, x.shape)
    known = self.sde.perturb(self._to(self.x_known), t, noise)
    return self._back(jnp.where(self.mask > 0, known, self._to(x)))


MASKS = ("half", "box", "random")


def make_mask(kind: str, shape, seed: int = 0) -> np.ndarray:
  """[H, W, 1] with 1 where the pixel is known, for images of shape [..., H, W, C]:
  "half", the right half unknown; "box", the central half-size square unknown; "random",
  each pixel unknown with probability 1/2 (seeded)."""
  h, w = shape[-3], shape[-2]
  mask = np.ones((h, w, 1), np.float32)
  if kind == "half":
    mask[:, w // 2:] = 0.0
  elif kind == "box":
    mask[h // 4:h // 4 + h // 2, w // 4:w // 4 + w // 2] = 0.0
  elif kind == "random":
    mask = (np.random.default_rng(seed).uniform(size=(h, w, 1)) < 0.5).astype(np.float32)
  else:
    raise ValueError(f"unknown mask {kind!r}; valid choices: {list(MASKS)}")
  return mask


def completion_problem(task: str, images: np.ndarray, mask: str = "half", seed: int = 0,
                       fill: float = 0.0):
  """(get_sampler, its extra arguments, the known part as a picture [N, H, W, C]) of
  completing `images` [N, H, W, C]: "inpaint", the pixels outside make_mask(mask, seed)
  unknown (pictured as `fill`); "colorize", only the channel mean of RGB images known."""
  if task == "inpaint":
    known = make_mask(mask, images.shape, seed)
    return (get_inpainter, (jnp.asarray(images), jnp.asarray(known)),
            np.where(known > 0, images, fill))
  if images.shape[-1] != 3:
    raise ValueError(f"colorize needs 3-channel images; this dataset has {images.shape[-1]}")
  gray = images.mean(-1, keepdims=True)
  return get_colorizer, (jnp.asarray(gray),), np.repeat(gray, 3, -1)


METHODS = ("replacement", "repaint")


def _check_method(method: str, resamplings: int) -> int:
  if method not in METHODS:
    raise ValueError(f"unknown conditional sampling method {method!r}; valid choices: "
                     f"{list(METHODS)}")
  return 1 if method == "replacement" else resamplings


def get_inpainter(sde: sde_lib.SDE, shape, method: str = "replacement", resamplings: int = 10,
                  **pc_settings) -> Callable:
  """inpaint(key, score_fn, x_known [shape], mask) -> (x [shape], nfe): the PC sampler
  (settings as sampling.get_pc_sampler) with the known part replaced after every step;
  "repaint" repeats each step `resamplings` times."""
  resamplings = _check_method(method, resamplings)
  sampler = sampling.get_pc_sampler(sde, shape, **pc_settings)

  def inpaint(key, score_fn, x_known, mask):
    try:
      mask = jnp.broadcast_to(jnp.asarray(mask, x_known.dtype), shape)
    except ValueError:
      raise ValueError(f"mask of shape {jnp.shape(mask)} does not broadcast to the samples' "
                       f"shape {tuple(shape)}") from None
    return sampler(key, score_fn, Replacement(sde, x_known, mask), resamplings)

  return inpaint


def color_basis() -> jax.Array:
  """An orthonormal basis of RGB whose first vector is the grey direction (1, 1, 1)/sqrt 3
  (Song et al.'s "orthogonal colour decoupling"): the grey coordinate is sqrt(3) times the
  channel mean, and the other two carry colour only."""
  m = np.array([[1.0, 1.0, 1.0], [1.0, -1.0, 0.0], [1.0, 1.0, -2.0]])
  return jnp.asarray(m / np.linalg.norm(m, axis=1, keepdims=True), jnp.float32)


def get_colorizer(sde: sde_lib.SDE, shape, method: str = "replacement", resamplings: int = 10,
                  **pc_settings) -> Callable:
  """colorize(key, score_fn, gray [B, H, W, 1]) -> (x [B, H, W, 3], nfe): samples whose
  channel mean is `gray` (in the model's data range), by replacement of the grey
  coordinate of `color_basis`."""
  if shape[-1] != 3:
    raise ValueError(f"colorization needs 3 channels; the samples' shape {tuple(shape)} has "
                     f"{shape[-1]}")
  resamplings = _check_method(method, resamplings)
  sampler = sampling.get_pc_sampler(sde, shape, **pc_settings)
  basis = color_basis()
  mask = jnp.zeros(shape).at[..., 0].set(1.0)

  def colorize(key, score_fn, gray):
    if gray.shape != (*shape[:-1], 1):
      raise ValueError(f"gray images of shape {gray.shape}; expected {(*shape[:-1], 1)}")
    x_known = jnp.broadcast_to(gray, shape)        # grey coordinate sqrt(3) gray, colour 0
    return sampler(key, score_fn, Replacement(sde, x_known, mask, basis), resamplings)

  return colorize

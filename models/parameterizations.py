"""Network output -> score: the one place that knows parameterizations (each a small
function in PARAMETERIZATIONS, as EDM's preconditioning is written).

A network is called as `apply_fn(params, x_in, c_noise)` with, by `noise_conditioning`,
  "log_sigma": c_noise = log sigma(t)   (the noise level, defined for every SDE), or
  "time":      c_noise = 999 t / T      (the timestep index of a 1000-step DDPM chain, for
                                        positional embeddings; score_sde's label of
                                        continuous VP models, whatever N or the number of
                                        sampling steps: a network sees the labels it was
                                        trained on),
  "level_index": c_noise = (N - 1)(1 - t / T)  (the index of sigma(t) among the N noise
                                        levels sigma_max ... sigma_min, counting down:
                                        score_sde's label of discretely trained VE
                                        networks, an integer at the grid times
                                        t_i = T (1 - i / (N - 1))),
and
  x_in = x / sqrt(alpha(t)^2 + sigma(t)^2)   if `scale_input`, else x
(the input scaling keeps the network's input at unit scale for data of unit scale,
as EDM's c_in), then x_in -> 2 x_in - 1 if `center_input` (score_sde's networks map
[0, 1] data to [-1, 1] themselves when `data.centered` is False). Its output becomes a
score by `parameterization`:
  "noise"  (epsilon prediction, DDPM):  score = -output / sigma(t)
  "scaled_score" (sigma times the score, score_sde's `scale_by_sigma` VE networks):
                                        score = output / sigma(t)
  "score"  (direct):                    score = output
  "data"   (x_0 prediction, EDM's D):   score = (alpha(t) output - x) / sigma(t)^2
  "edm"    (Karras et al., 2022, preconditioned, for any linear SDE): in the frame
           x_hat = x / alpha with sigma_hat = sigma / alpha and s_d = sigma_data,
             c_skip = s_d^2 / (sigma_hat^2 + s_d^2)
             c_out  = sigma_hat s_d / sqrt(sigma_hat^2 + s_d^2)
             c_in   = 1 / sqrt(sigma_hat^2 + s_d^2)       (replaces `scale_input`)
             D      = c_skip x_hat + c_out output(c_in x_hat, c_noise)
           and score = (alpha D - x) / sigma^2. Where alpha -> 0 the x_0 estimate D is
           c_out output ~ s_d output, bounded, whereas "noise" gives x_0 = (x - sigma
           output) / alpha, which multiplies the network's error by sigma / alpha.
  "v"      (v prediction, Salimans & Ho, 2022), in the variance-preserving frame
           a = alpha / r, b = sigma / r, r = sqrt(alpha^2 + sigma^2) (for VP, r = 1):
           v = a z - b x_0, so eps_hat = b x / r + a output and score = -eps_hat / sigma
  "flow"   (the flow-matching velocity, d/dt of alpha x_0 + sigma z): output = f x -
           g^2 s / 2, the probability-flow drift, so score = 2 (f x - output) / g^2; for
           rectified flow the target is z - x_0.
  "consistency" (a consistency function, Song et al., 2023): "edm"'s form with
           `consistency_coefficients` at the boundary time `consistency_eps`, so that
           alpha(eps) D = f(x, t) is `get_consistency_fn`'s map to time eps and the score
           is the one whose denoiser gives it (consistency.as_score_fn): every sampler
           takes it, and sampling.get_consistency_sampler steps with f.
"""
import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

import sde_lib

TIME_LABEL_SCALE = 999.0


class Noisy(NamedTuple):
  """x [B, ...] at times t [B]; alpha, sigma: alpha(t), sigma(t) broadcast against x;
  x_in: the network input (x at unit scale if `scale_input`, then 2 x_in - 1 if
  `center_input`; "edm" makes its own from x)."""
  x: jax.Array
  t: jax.Array
  alpha: jax.Array
  sigma: jax.Array
  x_in: jax.Array


def _noise(net, n: Noisy, sde, sigma_data):
  return -net(n.x_in) / n.sigma


def _scaled_score(net, n: Noisy, sde, sigma_data):
  return net(n.x_in) / n.sigma


def _score(net, n: Noisy, sde, sigma_data):
  return net(n.x_in)


def _data(net, n: Noisy, sde, sigma_data):
  return (n.alpha * net(n.x_in) - n.x) / n.sigma**2


def _edm(net, n: Noisy, sde, sigma_data):
  sigma_hat = n.sigma / n.alpha
  c_skip = sigma_data**2 / (sigma_hat**2 + sigma_data**2)
  c_out = sigma_hat * sigma_data / jnp.sqrt(sigma_hat**2 + sigma_data**2)
  c_in = 1.0 / jnp.sqrt(sigma_hat**2 + sigma_data**2)
  x_hat = n.x / n.alpha
  denoised = c_skip * x_hat + c_out * net(c_in * x_hat)
  return (n.alpha * denoised - n.x) / n.sigma**2


def _consistency(net, n: Noisy, sde, sigma_data, eps=1e-3):
  sigma_hat = n.sigma / n.alpha
  sigma_hat_min = jnp.exp(-sde.log_snr(jnp.full((1,), eps)))[0]
  c_skip, c_out, c_in = consistency_coefficients(sigma_hat, sigma_hat_min, sigma_data)
  x_hat = n.x / n.alpha
  denoised = c_skip * x_hat + c_out * net(c_in * x_hat)
  return (n.alpha * denoised - n.x) / n.sigma**2


def _v(net, n: Noisy, sde, sigma_data):
  r2 = n.alpha**2 + n.sigma**2
  eps_hat = n.sigma / r2 * n.x + n.alpha / jnp.sqrt(r2) * net(n.x_in)
  return -eps_hat / n.sigma


def _flow(net, n: Noisy, sde, sigma_data):
  f, g = (sde_lib.batch_broadcast(c, n.x) for c in sde.coefficients(n.t))
  return 2.0 * (f * n.x - net(n.x_in)) / g**2


# (net(x_in) -> output, Noisy, sde, sigma_data) -> score [B, ...]
PARAMETERIZATIONS = {"noise": _noise, "scaled_score": _scaled_score, "score": _score,
                     "data": _data, "edm": _edm, "v": _v, "flow": _flow,
                     "consistency": _consistency}
# (sde, t [B]) -> c_noise [B]
NOISE_CONDITIONINGS = {
    "log_sigma": lambda sde, t: jnp.log(sde.marginal(t)[1]),
    "time": lambda sde, t: TIME_LABEL_SCALE * t / sde.T,
    "level_index": lambda sde, t: (sde.N - 1) * (1.0 - t / sde.T),
}


def get_score_fn(apply_fn: Callable[..., jax.Array], params: Any, sde: sde_lib.SDE,
                 parameterization: str = "noise", scale_input: bool = True,
                 noise_conditioning: str = "log_sigma", sigma_data: float = 0.5,
                 center_input: bool = False, consistency_eps: float = 1e-3):
  """Returns score_fn(x [B, ...], t [B]) -> [B, ...] for a network `apply_fn`
  (consistency_eps: the boundary time of parameterization "consistency")."""
  for name, registry, what in ((parameterization, PARAMETERIZATIONS, "parameterization"),
                               (noise_conditioning, NOISE_CONDITIONINGS, "noise_conditioning")):
    if name not in registry:
      raise ValueError(f"unknown {what} {name!r}; valid choices: {list(registry)}")
  to_score = PARAMETERIZATIONS[parameterization]
  if parameterization == "consistency":
    to_score = functools.partial(to_score, eps=consistency_eps)
  conditioning = NOISE_CONDITIONINGS[noise_conditioning]

  def score_fn(x, t):
    alpha, sigma = (sde_lib.batch_broadcast(c, x) for c in sde.marginal(t))
    x_in = x / jnp.sqrt(alpha**2 + sigma**2) if scale_input else x
    x_in = 2 * x_in - 1 if center_input else x_in
    c_noise = conditioning(sde, t)
    net = lambda v: apply_fn(params, v, c_noise)
    return to_score(net, Noisy(x, t, alpha, sigma, x_in), sde, sigma_data)

  return score_fn


def _network(model, train: bool, key, labels) -> Callable[..., jax.Array]:
  """apply_fn(params, x, c) of a Flax network (model.apply(params, x, c, train=...,
  labels=...)), dropout drawn from `key` in training."""
  rngs = {"dropout": key} if train else None
  extra = {} if labels is None else {"labels": labels}
  return lambda p, x, c: model.apply(p, x, c, train=train, rngs=rngs, **extra)


def network_score_fn(model, sde: sde_lib.SDE, **options) -> Callable:
  """score_fn(params, train=False, key=None, labels=None) -> s(x, t) of a Flax network
  through `get_score_fn` with `options`."""

  def score_fn(params, train=False, key=None, labels=None):
    return get_score_fn(_network(model, train, key, labels), params, sde, **options)

  return score_fn


def network_consistency_fn(model, sde: sde_lib.SDE, **options) -> Callable:
  """consistency_fn(params, train=False, key=None) -> f(x, t) of a Flax network through
  `get_consistency_fn` with `options` (eps, sigma_data, noise_conditioning): the map
  whose score is parameterization "consistency"'s with the same settings."""

  def consistency_fn(params, train=False, key=None):
    return get_consistency_fn(_network(model, train, key, None), params, sde, **options)

  return consistency_fn


def consistency_coefficients(sigma_hat, sigma_hat_min, sigma_data: float):
  """(c_skip, c_out, c_in) of a consistency function (Song et al., 2023, Appendix C), in
  EDM's frame sigma_hat = sigma / alpha, with the boundary at sigma_hat_min:
    c_skip = s_d^2 / ((sigma_hat - sigma_hat_min)^2 + s_d^2)      (1 at the boundary)
    c_out  = s_d (sigma_hat - sigma_hat_min) / sqrt(s_d^2 + sigma_hat^2)   (0 there)
    c_in   = 1 / sqrt(sigma_hat^2 + s_d^2)."""
  c_skip = sigma_data**2 / ((sigma_hat - sigma_hat_min) ** 2 + sigma_data**2)
  c_out = sigma_data * (sigma_hat - sigma_hat_min) / jnp.sqrt(sigma_data**2 + sigma_hat**2)
  c_in = 1.0 / jnp.sqrt(sigma_hat**2 + sigma_data**2)
  return c_skip, c_out, c_in


def get_consistency_fn(apply_fn: Callable[..., jax.Array], params: Any, sde: sde_lib.SDE,
                       eps: float = 1e-3, sigma_data: float = 0.5,
                       noise_conditioning: str = "log_sigma",
                       coefficients=consistency_coefficients):
  """The consistency function f(x [B, ...], t [B]) -> x_eps [B, ...] of a network
  apply_fn(params, x_in, c_noise): the estimate of where the probability-flow ODE from
  (x, t) lands at time eps, for any linear SDE. In x_hat = x / alpha(t) with sigma_hat =
  sigma / alpha (the frame where every linear SDE's ODE is EDM's),
    f = alpha(eps) (c_skip x_hat + c_out output(c_in x_hat, c_noise))
  with `coefficients`(sigma_hat(t), sigma_hat(eps), sigma_data), so f(x, eps) = x
  exactly."""
  conditioning = NOISE_CONDITIONINGS[noise_conditioning]
  sigma_hat_min = jnp.exp(-sde.log_snr(jnp.full((1,), eps)))
  alpha_min = sde.marginal(jnp.full((1,), eps))[0]

  def consistency_fn(x, t):
    b = lambda v: sde_lib.batch_broadcast(v, x)
    alpha, sigma = sde.marginal(t)
    sigma_hat = sigma / alpha
    c_skip, c_out, c_in = coefficients(sigma_hat, sigma_hat_min, sigma_data)
    x_hat = x / b(alpha)
    output = apply_fn(params, b(c_in) * x_hat, conditioning(sde, t))
    return b(alpha_min) * (b(c_skip) * x_hat + b(c_out) * output)

  return consistency_fn

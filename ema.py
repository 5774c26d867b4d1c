"""Power-function EMA and post-hoc EMA reconstruction (Karras et al., 2024, "Analyzing and
Improving the Training Dynamics of Diffusion Models", EDM2, Sec. 3 and App. C).

Conventions: theta_1, theta_2, ... are the parameters after optimizer steps 1, 2, ...; an
average at step t is sum_{tau <= t} w_tau theta_tau with weights summing to 1.

The power EMA with exponent gamma updates hat_t = beta_t hat_{t-1} + (1 - beta_t) theta_t
with beta_t = (1 - 1/t)^(gamma + 1) (beta_1 = 0: the initialization is forgotten at
once). Its weights are exactly

    w_tau = (tau^(gamma + 1) - (tau - 1)^(gamma + 1)) / t^(gamma + 1),

a discretized power profile ~ (gamma + 1) tau^gamma / t^(gamma + 1): the average always
covers a fixed fraction of training, its relative width sigma_rel = sqrt((gamma + 1) /
((gamma + 2)^2 (gamma + 3))) (the standard deviation of the profile over t). Tracking
two such averages and storing them every few thousand steps lets any other profile
(a different width, or an earlier end point) be reconstructed after training, as the
least-squares combination of the stored profiles (`posthoc_coefficients`).

In training: `decay_fn` gives the train state's EMA decay (a constant rate with or
without warmup, or a power EMA); `track_power_emas` is an optax transformation that keeps
more power EMAs of the parameters in the optimizer state (infra/workdir.py stores
them and rebuilds other profiles from them).
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax


def sigma_rel_of_gamma(gamma):
  """The relative standard deviation of the power profile of exponent gamma."""
  gamma = np.asarray(gamma, np.float64)
  return np.sqrt((gamma + 1) / ((gamma + 2) ** 2 * (gamma + 3)))


def gamma_of_sigma_rel(sigma_rel: float) -> float:
  """The exponent gamma > 0 whose profile has relative width sigma_rel, 0 < sigma_rel <
  1/sqrt(12) (gamma = 0, a uniform average): the largest real root of
  (gamma + 2)^2 (gamma + 3) sigma_rel^2 = gamma + 1, i.e. of the cubic
  gamma^3 + 7 gamma^2 + (16 - 1/sigma_rel^2) gamma + (12 - 1/sigma_rel^2)."""
  if not 0.0 < sigma_rel < 12 ** -0.5:
    raise ValueError(f"sigma_rel={sigma_rel} is outside (0, 0.2887), the relative widths "
                     "of power EMAs with gamma > 0")
  inv = 1.0 / sigma_rel**2
  roots = np.roots([1.0, 7.0, 16.0 - inv, 12.0 - inv])
  real = roots[np.abs(roots.imag) < 1e-9].real
  return float(real[real > -1].max())


def power_decay(step, gamma: float):
  """beta of the update that produces parameters number step + 1 (step = the optimizer
  steps taken before it, a scalar, possibly traced): (1 - 1/(step + 1))^(gamma + 1)."""
  t = step + 1.0
  return (1.0 - 1.0 / t) ** (gamma + 1.0)


def power_weights(t: int, gamma: float, length: int | None = None) -> np.ndarray:
  """The weights [length] (default t) of theta_1 .. theta_length in the power EMA of
  exponent gamma at step t (zero past t)."""
  tau = np.arange(1, (length or t) + 1, dtype=np.float64)
  tau_in = np.minimum(tau, t)
  weights = (tau_in ** (gamma + 1) - (tau_in - 1) ** (gamma + 1)) / float(t) ** (gamma + 1)
  return np.where(tau <= t, weights, 0.0)


def posthoc_coefficients(stored, target) -> tuple[np.ndarray, float]:
  """Least-squares coefficients c with sum_i c_i hat_i ~ the target average.

  stored: [(t_i, gamma_i)], the step and exponent of each stored power average hat_i;
  target: (t, gamma) of the wanted one (t <= the last stored step). Solves
  min_c || sum_i c_i w(t_i, gamma_i) - w(t, gamma) ||_2 over the discrete weight vectors.
  Returns (c [len(stored)], the residual's norm relative to ||w(t, gamma)||): the
  reconstruction differs from the true average by sum_tau r_tau theta_tau with that
  residual r, so it is exact when the target lies in the span of the stored profiles."""
  t_target, gamma_target = target
  length = max(max(t for t, _ in stored), t_target)
  basis = np.stack([power_weights(t, g, length) for t, g in stored], axis=1)   # [T, K]
  wanted = power_weights(t_target, gamma_target, length)
  coefficients, *_ = np.linalg.lstsq(basis, wanted, rcond=None)
  residual = np.linalg.norm(basis @ coefficients - wanted) / np.linalg.norm(wanted)
  return coefficients, float(residual)


def posthoc_average(snapshots, sigma_rel: float, step: int) -> tuple[object, float]:
  """The power EMA of relative width sigma_rel at `step`, rebuilt from stored snapshots:
  dicts {"step": t_i, "sigma_rels": {i: sigma_rel_i}, "averages": {i: parameter tree}}
  taken at or before `step` (`posthoc_coefficients`). Returns (parameters, the relative
  residual of its profile)."""
  stored, trees = [], []
  for snapshot in snapshots:
    for i, average in snapshot["averages"].items():
      stored.append((int(snapshot["step"]), gamma_of_sigma_rel(snapshot["sigma_rels"][i])))
      trees.append(average)
  coefficients, residual = posthoc_coefficients(stored, (step, gamma_of_sigma_rel(sigma_rel)))
  params = jax.tree_util.tree_map(
      lambda *leaves: np.einsum("k,k...->...", coefficients, np.stack(leaves).astype(np.float64)
                                ).astype(leaves[0].dtype), *trees)
  return params, residual


# --- In training. ---------------------------------------------------------------------

def decay_fn(ema_rate: float, warmup: bool = True, sigma_rel: float = 0.0):
  """step -> the EMA decay of the update that produces parameters number step + 1.

  sigma_rel > 0: the power EMA of that relative width (`power_decay`). Otherwise
  `ema_rate`, with `warmup` capped at (1 + step) / (10 + step) (TensorFlow's
  ExponentialMovingAverage num_updates), so the average forgets the initialization at
  once instead of keeping ema_rate^steps of it (a zero-initialized output layer then
  shrinks every EMA prediction by that fraction)."""
  if sigma_rel:
    gamma = gamma_of_sigma_rel(sigma_rel)
    return lambda step: power_decay(jnp.asarray(step, jnp.float32), gamma)
  if not warmup:
    return lambda step: ema_rate
  return lambda step: jnp.minimum(ema_rate, (1.0 + step) / (10.0 + jnp.asarray(step, jnp.float32)))


class PowerEmaState(NamedTuple):
  count: jax.Array          # optimizer steps taken
  averages: tuple           # one parameter tree per exponent


def track_power_emas(gammas: tuple[float, ...]) -> optax.GradientTransformation:
  """Passes updates through unchanged and keeps, in its state, the power EMAs of exponents
  `gammas` of the parameters after each update. Chain it last (after every
  transformation that changes the updates): it sees params + updates."""
  def init(params):
    return PowerEmaState(jnp.zeros((), jnp.int32), tuple(params for _ in gammas))

  def update(updates, state, params):
    new_params = optax.apply_updates(params, updates)
    averages = tuple(
        jax.tree_util.tree_map(lambda a, p, b=power_decay(state.count.astype(jnp.float32), g):
                               b * a + (1.0 - b) * p, average, new_params)
        for g, average in zip(gammas, state.averages))
    return updates, PowerEmaState(state.count + 1, averages)

  return optax.GradientTransformation(init, update)

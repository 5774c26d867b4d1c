"""Forward SDEs of score-based diffusion models (Song et al., 2021) and their reverses.

Every SDE here is *linear* with scalar coefficients,

    dx = f(t) x dt + g(t) dW,        t in [0, T],

so its perturbation kernel is Gaussian: x_t | x_0 ~ N(alpha(t) x_0, sigma(t)^2 I).
A new SDE of this family is written by giving `coefficients` (f, g) and `marginal`
(alpha, sigma); everything else (batch shapes, prior, discretization, reverse-time
SDE, probability-flow ODE) is derived here.

Shapes: `x` is a batch `[B, ...]`, `t` is `[B]`; scalar-coefficient methods accept
`t` of any shape and return arrays of that shape.
"""
import abc
import dataclasses
import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

ScoreFn = Callable[[jax.Array, jax.Array], jax.Array]


def batch_broadcast(v: jax.Array, x: jax.Array) -> jax.Array:
  """Reshapes per-example values `v` [B] to [B, 1, ..., 1] so they scale `x` [B, ...]."""
  return jnp.reshape(v, v.shape + (1,) * (x.ndim - v.ndim))


def invert_decreasing(fn: Callable[[jax.Array], jax.Array], y: jax.Array, lo: float,
                      hi: float) -> jax.Array:
  """t in [lo, hi] with fn(t) = y, elementwise, for a decreasing fn: 60 bisection halvings."""
  lo, hi = jnp.full_like(y, lo), jnp.full_like(y, hi)

  def halve(_, bounds):
    lo, hi = bounds
    mid = 0.5 * (lo + hi)
    above = fn(mid) > y   # fn decreasing: the root is above mid
    return jnp.where(above, mid, lo), jnp.where(above, hi, mid)

  lo, hi = jax.lax.fori_loop(0, 60, halve, (lo, hi))
  return 0.5 * (lo + hi)


class SDE(abc.ABC):
  """A linear SDE dx = f(t) x dt + g(t) dW on [0, T], discretized with N steps."""

  T: float
  N: int

  @abc.abstractmethod
  def coefficients(self, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Returns (f(t), g(t)): drift coefficient and diffusion coefficient."""

  @abc.abstractmethod
  def marginal(self, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Returns (alpha(t), sigma(t)) of the perturbation kernel p_t(x_t | x_0)."""

  @property
  def prior_std(self) -> float:
    """Standard deviation of the prior N(0, prior_std^2 I) approximating p_T."""
    with jax.ensure_compile_time_eval():
      return float(self.marginal(jnp.asarray(self.T))[1])

  # --- Derived interface (DESIGN.md's public API). -------------------------------

  def sde(self, x: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Drift f(t) x [B, ...] and diffusion g(t) [B]."""
    f, g = self.coefficients(t)
    return batch_broadcast(f, x) * x, g

  def marginal_prob(self, x: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean alpha(t) x [B, ...] and std sigma(t) [B] of p_t(x_t | x_0 = x)."""
    alpha, sigma = self.marginal(t)
    return batch_broadcast(alpha, x) * x, sigma

  def perturb(self, x0: jax.Array, t: jax.Array, z: jax.Array) -> jax.Array:
    """x_t = alpha(t) x0 + sigma(t) z [B, ...]: with z ~ N(0, I), a draw from p_t(. | x0)."""
    alpha, sigma = self.marginal(t)
    return batch_broadcast(alpha, x0) * x0 + batch_broadcast(sigma, z) * z

  @property
  def variance_exploding(self) -> bool:
    """Whether alpha(t) = 1 throughout (x_t = x_0 + sigma(t) z), checked on 17 times."""
    with jax.ensure_compile_time_eval():
      return bool(jnp.all(self.marginal(jnp.linspace(0.0, self.T, 17))[0] == 1.0))

  def prior_sampling(self, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    return self.prior_std * jax.random.normal(key, shape)

  def prior_logp(self, z: jax.Array) -> jax.Array:
    """Log-density [B] (nats) of z [B, ...] under N(0, prior_std^2 I)."""
    dim = math.prod(z.shape[1:])
    sq = jnp.sum(jnp.reshape(z, (z.shape[0], -1)) ** 2, axis=-1)
    return (-0.5 * dim * math.log(2 * math.pi * self.prior_std**2)
            - 0.5 * sq / self.prior_std**2)

  def transition(self, t: jax.Array, s: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(a, v) with x_t | x_s ~ N(a x_s, v I), s <= t, exactly, for this linear SDE.

    Uses sigma_t^2 = a^2 sigma_s^2 + v, which holds for every linear SDE.
    """
    alpha_t, sigma_t = self.marginal(t)
    alpha_s, sigma_s = self.marginal(s)
    a = alpha_t / alpha_s
    return a, jnp.maximum(sigma_t**2 - a**2 * sigma_s**2, 0.0)

  def discretize(self, x: jax.Array, t: jax.Array, dt: jax.Array | float | None = None):
    """One step of the forward process from t - dt to t: x_t = x + f_d + G_d z.

    Returns (f_d [B, ...], G_d [B]). The default is Euler-Maruyama; dt defaults to
    T / N (dt may be a scalar or [B]).
    """
    dt = self.T / self.N if dt is None else dt
    drift, g = self.sde(x, t)
    dt = jnp.broadcast_to(jnp.asarray(dt, x.dtype), t.shape)
    return drift * batch_broadcast(dt, x), g * jnp.sqrt(dt)

  def log_snr(self, t: jax.Array) -> jax.Array:
    """lambda(t) = log(alpha / sigma), decreasing in t."""
    alpha, sigma = self.marginal(t)
    return jnp.log(alpha) - jnp.log(sigma)

  def t_of_log_snr(self, lam: jax.Array, t_min: float = 0.0, t_max: float | None = None
                   ) -> jax.Array:
    """Inverse of `log_snr` on [t_min, t_max] (default T), by bisection (60 halvings:
    float64-exact); lam outside the range gives the nearer end."""
    return invert_decreasing(self.log_snr, lam, t_min, self.T if t_max is None else t_max)

  @property
  def max_time(self) -> float:
    """The largest time at which samplers may evaluate the marginal and the score: T, where
    the schedule ends there (VP, sub-VP, rectified flow). Processes whose noise level
    continues past T (VE, EDM) raise it to where sigma / alpha is twice its value at T, so
    that EDM's churn (at most sqrt(2) sigma(T) / alpha(T)) is evaluated where it lands."""
    return self.T

  def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> "ReverseSDE":
    return ReverseSDE(self, score_fn, probability_flow)


@dataclasses.dataclass(frozen=True)
class ReverseSDE:
  """The reverse-time SDE dx = [f - g^2 s] dt + g dW-bar, or, with
  `probability_flow`, the ODE dx = [f - g^2 s / 2] dt (Song et al., 2021, eqs. 6, 13).

  Wraps a forward `SDE` and a score function s(x, t); time runs from T to 0, and
  `discretize` gives the reverse step t -> t - dt: x_{t-dt} = x - f_r + G_r z.
  """

  forward: SDE
  score_fn: ScoreFn
  probability_flow: bool = False

  @property
  def T(self) -> float:
    return self.forward.T

  @property
  def N(self) -> int:
    return self.forward.N

  @property
  def _score_weight(self) -> float:
    return 0.5 if self.probability_flow else 1.0

  def sde(self, x, t):
    drift, g = self.forward.sde(x, t)
    g2 = batch_broadcast(g**2, x)
    drift = drift - g2 * self.score_fn(x, t) * self._score_weight
    return drift, jnp.zeros_like(g) if self.probability_flow else g

  def discretize(self, x, t, dt=None):
    f, G = self.forward.discretize(x, t, dt)
    f = f - batch_broadcast(G**2, x) * self.score_fn(x, t) * self._score_weight
    return f, jnp.zeros_like(G) if self.probability_flow else G


def _check(condition: bool, message: str) -> None:
  if not condition:
    raise ValueError(message)


def _check_common(T: float, N: int) -> None:
  _check(T > 0, f"T must be positive, got T={T}")
  _check(isinstance(N, int) and N >= 1, f"N must be an integer >= 1, got N={N!r}")


def _check_betas(name: str, beta_min: float, beta_max: float) -> None:
  _check(0 <= beta_min <= beta_max and beta_max > 0,
         f"{name} needs 0 <= beta_min <= beta_max and beta_max > 0, got "
         f"beta_min={beta_min}, beta_max={beta_max}")


def _linear_beta(t, beta_min, beta_max, T):
  """beta(t) = beta_min + (beta_max - beta_min) t / T and B(t) = int_0^t beta."""
  beta = beta_min + (beta_max - beta_min) * t / T
  return beta, beta_min * t + 0.5 * (beta_max - beta_min) * t**2 / T


@dataclasses.dataclass(frozen=True)
class VESDE(SDE):
  """Variance-exploding SDE (SMLD): dx = sqrt(d sigma^2(t) / dt) dW,
  sigma(t) = sigma_min (sigma_max / sigma_min)^(t / T).

  As in Song et al. (2021), the marginal std is sigma(t) itself: the process starts
  at t = 0 from the data smoothed by N(0, sigma_min^2), the smallest SMLD noise level.
  `discretize` is the SMLD step with variance sigma(t)^2 - sigma(t - dt)^2.
  """

  sigma_min: float = 0.01
  sigma_max: float = 50.0
  N: int = 1000
  T: float = 1.0

  def __post_init__(self):
    _check_common(self.T, self.N)
    _check(0 < self.sigma_min < self.sigma_max,
           f"VESDE needs 0 < sigma_min < sigma_max, got sigma_min={self.sigma_min}, "
           f"sigma_max={self.sigma_max}")

  @property
  def prior_std(self) -> float:
    return self.sigma_max

  def sigma(self, t):
    return self.sigma_min * (self.sigma_max / self.sigma_min) ** (t / self.T)

  def coefficients(self, t):
    rate = 2 * math.log(self.sigma_max / self.sigma_min) / self.T
    return jnp.zeros_like(t), self.sigma(t) * math.sqrt(rate)

  def marginal(self, t):
    return jnp.ones_like(t), self.sigma(t)

  @property
  def max_time(self) -> float:
    """sigma(t) continues geometrically past T: twice sigma_max at T (1 + ln 2 / ln ratio)."""
    return self.T * (1.0 + math.log(2.0) / math.log(self.sigma_max / self.sigma_min))

  def discretize(self, x, t, dt=None):
    dt = self.T / self.N if dt is None else dt
    var = self.sigma(t) ** 2 - self.sigma(t - dt) ** 2
    return jnp.zeros_like(x), jnp.sqrt(var)


@dataclasses.dataclass(frozen=True)
class VPSDE(SDE):
  """Variance-preserving SDE (DDPM): dx = -beta(t) x / 2 dt + sqrt(beta(t)) dW,
  beta(t) = beta_min + (beta_max - beta_min) t / T.

  alpha(t) = exp(-B(t) / 2), sigma(t)^2 = 1 - exp(-B(t)), B(t) = int_0^t beta.
  `discretize` is the DDPM step x <- sqrt(1 - b) x + sqrt(b) z with b = beta(t) dt.
  """

  beta_min: float = 0.1
  beta_max: float = 20.0
  N: int = 1000
  T: float = 1.0

  def __post_init__(self):
    _check_common(self.T, self.N)
    _check_betas("VPSDE", self.beta_min, self.beta_max)

  @property
  def prior_std(self) -> float:
    return 1.0

  def coefficients(self, t):
    beta, _ = _linear_beta(t, self.beta_min, self.beta_max, self.T)
    return -0.5 * beta, jnp.sqrt(beta)

  def marginal(self, t):
    _, big_b = _linear_beta(t, self.beta_min, self.beta_max, self.T)
    return jnp.exp(-0.5 * big_b), jnp.sqrt(-jnp.expm1(-big_b))

  def discretize(self, x, t, dt=None):
    dt = self.T / self.N if dt is None else dt
    b = _linear_beta(t, self.beta_min, self.beta_max, self.T)[0] * dt
    shrink = -b / (1.0 + jnp.sqrt(1.0 - b))          # sqrt(1 - b) - 1 without cancellation
    return batch_broadcast(shrink, x) * x, jnp.sqrt(b)


@dataclasses.dataclass(frozen=True)
class DDPMChain(SDE):
  """The discrete DDPM chain (Ho et al., 2020) on which score_sde trains its discrete VP
  networks (`training.continuous = False`), as a process of continuous time.

  Its N steps x_n = sqrt(1 - beta_n) x_{n-1} + sqrt(beta_n) z, n = 1..N, from the data
  x_0, have score_sde's betas beta_n = beta_min / N + (n - 1) (beta_max - beta_min) /
  (N (N - 1)) (linspace(beta_min / N, beta_max / N, N); 1e-4 ... 0.02 for N = 1000), so
  x_n | x_0 ~ N(sqrt(abar_n) x_0, (1 - abar_n) I), abar_n = prod_{k <= n} (1 - beta_k).
  Time t in (0, T] is on level

      n(t) = floor((N - 1) t / T) + 1      (n(T) = N; n(0) = 0: the data),

  score_sde's rule: its discrete VP score divides the network's epsilon by
  sqrt_1m_alphas_cumprod[int(t (N - 1))], which is 1-based level n(t) (and the network
  sees the label t (N - 1), for N = 1000 the "time" conditioning 999 t). `marginal` is
  the chain's (sqrt(abar_n(t)), sqrt(1 - abar_n(t))), piecewise constant, and
  `transition` (hence the ancestral predictors, Langevin's alpha_i) and `discretize` are
  the chain's exact kernels between the levels of two times. On score_sde's sampling grid
  [linspace(T, eps, N), 0] the levels are N, N - 1, ..., 1, 0: N steps of DDPM's chain,
  each from level n to n - 1, with a = sqrt(1 - beta_n) and v = beta_n, the last onto the
  data. What needs a derivative in t (Euler-Maruyama, the probability-flow ODE and the
  likelihood) uses `coefficients`, those of the VP SDE with beta(t) = beta_min + (beta_max
  - beta_min) t / T, of which the chain is the discretization (beta_n = beta(t_{n-1}) / N,
  t_j = j T / (N - 1)).

  The tables are computed in float64 (abar_n through sums of log(1 - beta_k)) and stored
  in float32; score_sde's float32 cumprod differs from them by up to 8e-5 (relative, at n =
  1) in sqrt(1 - abar_n).
  """

  beta_min: float = 0.1
  beta_max: float = 20.0
  N: int = 1000
  T: float = 1.0

  def __post_init__(self):
    _check_common(self.T, self.N)
    _check(self.N >= 2, f"DDPMChain needs N >= 2 levels, got N={self.N}")
    _check_betas("DDPMChain", self.beta_min, self.beta_max)
    _check(self.beta_max < self.N, f"DDPMChain needs beta_max / N < 1, got "
           f"beta_max={self.beta_max}, N={self.N}")

  @functools.cached_property
  def _tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(beta_n, sqrt(abar_n), sqrt(1 - abar_n)) for n = 0..N (level 0: the data), float32."""
    betas = np.concatenate([[0.0], np.linspace(self.beta_min / self.N, self.beta_max / self.N,
                                               self.N)])
    log_abar = np.cumsum(np.log1p(-betas))
    return tuple(np.float32(v) for v in (betas, np.exp(0.5 * log_abar),
                                         np.sqrt(-np.expm1(log_abar))))

  @property
  def betas(self) -> np.ndarray:
    """beta_n [N + 1], n = 0..N (beta_0 = 0: level 0 is the data)."""
    return self._tables[0]

  def level(self, t: jax.Array) -> jax.Array:
    """n(t) = floor((N - 1) t / T) + 1 in 1..N for t > 0, 0 for t <= 0 (int32, t's shape)."""
    n = jnp.clip(jnp.floor(t * (self.N - 1) / self.T).astype(jnp.int32) + 1, 1, self.N)
    return jnp.where(t > 0, n, 0)

  @property
  def prior_std(self) -> float:
    return 1.0

  def coefficients(self, t):
    beta, _ = _linear_beta(t, self.beta_min, self.beta_max, self.T)
    return -0.5 * beta, jnp.sqrt(beta)

  def marginal(self, t):
    n = self.level(t)
    _, sqrt_abar, sqrt_1m_abar = self._tables
    return jnp.asarray(sqrt_abar)[n], jnp.asarray(sqrt_1m_abar)[n]

  def discretize(self, x, t, dt=None):
    """The chain's step from the level of t - dt to that of t (dt defaults to T / N):
    x <- a x + sqrt(v) z, (a, v) = transition(t, t - dt); DDPM's sqrt(1 - beta_n) and
    beta_n across one level. a - 1 is written -v / (1 + a) (a^2 + v = 1 on the chain),
    without cancellation."""
    dt = self.T / self.N if dt is None else dt
    a, v = self.transition(t, t - dt)
    return batch_broadcast(-v / (1.0 + a), x) * x, jnp.sqrt(v)


@dataclasses.dataclass(frozen=True)
class subVPSDE(SDE):  # pylint: disable=invalid-name  (the published name)
  """Sub-VP SDE: dx = -beta(t) x / 2 dt + sqrt(beta(t) (1 - exp(-2 B(t)))) dW.

  alpha(t) = exp(-B(t) / 2), sigma(t) = 1 - exp(-B(t)). Euler-Maruyama discretization.
  """

  beta_min: float = 0.1
  beta_max: float = 20.0
  N: int = 1000
  T: float = 1.0

  def __post_init__(self):
    _check_common(self.T, self.N)
    _check_betas("subVPSDE", self.beta_min, self.beta_max)

  @property
  def prior_std(self) -> float:
    return 1.0

  def coefficients(self, t):
    beta, big_b = _linear_beta(t, self.beta_min, self.beta_max, self.T)
    return -0.5 * beta, jnp.sqrt(-beta * jnp.expm1(-2 * big_b))

  def marginal(self, t):
    _, big_b = _linear_beta(t, self.beta_min, self.beta_max, self.T)
    return jnp.exp(-0.5 * big_b), -jnp.expm1(-big_b)


@dataclasses.dataclass(frozen=True)
class EDMProcess(SDE):
  """EDM's process (Karras et al., 2022): time is the noise level, x_t = x_0 + t z, so
  alpha(t) = 1, sigma(t) = t on [0, T = sigma_max], dx = sqrt(2 t) dW. Samplers stop at
  their eps (EDM's sigma_min = 0.002). `discretize` has the exact variance
  t^2 - (t - dt)^2, as the SMLD step."""

  sigma_max: float = 80.0
  N: int = 1000

  def __post_init__(self):
    _check(self.sigma_max > 0, f"EDMProcess needs sigma_max > 0, got sigma_max={self.sigma_max}")
    _check_common(self.sigma_max, self.N)

  @property
  def T(self) -> float:
    return self.sigma_max

  @property
  def prior_std(self) -> float:
    return self.sigma_max

  def coefficients(self, t):
    return jnp.zeros_like(t), jnp.sqrt(2.0 * t)

  def marginal(self, t):
    return jnp.ones_like(t), t

  @property
  def max_time(self) -> float:
    """t is sigma, defined for every t >= 0: 2 sigma_max."""
    return 2.0 * self.sigma_max

  def discretize(self, x, t, dt=None):
    dt = self.T / self.N if dt is None else dt
    return jnp.zeros_like(x), jnp.sqrt(t**2 - (t - dt) ** 2)


@dataclasses.dataclass(frozen=True)
class RectifiedFlow(SDE):
  """The rectified-flow / flow-matching interpolant x_t = (1 - t) x_0 + t z (Liu et al.,
  2023; Lipman et al., 2023): alpha(t) = 1 - t, sigma(t) = t, so
  f(t) = -1 / (1 - t) and g(t)^2 = 2 t / (1 - t). Its probability-flow ODE is the
  flow-matching velocity v(x, t) = E[z - x_0 | x_t = x] = -(x + t s(x, t)) / (1 - t).

  T defaults to 0.999, not 1: at t = 1, alpha vanishes and f and g are singular (every
  sampler divides by alpha). The prior N(0, 0.999^2 I) misses p_T by the 0.001 x_0 term
  of its mean."""

  N: int = 1000
  T: float = 0.999

  def __post_init__(self):
    _check_common(self.T, self.N)
    _check(self.T < 1.0, f"RectifiedFlow needs T < 1 (alpha(1) = 0), got T={self.T}")

  def coefficients(self, t):
    return -1.0 / (1.0 - t), jnp.sqrt(2.0 * t / (1.0 - t))

  def marginal(self, t):
    return 1.0 - t, t


SDES = {"vesde": VESDE, "vpsde": VPSDE, "ddpm_chain": DDPMChain, "subvpsde": subVPSDE,
        "edm": EDMProcess, "rectified_flow": RectifiedFlow}


def get_sde(name: str, **kwargs) -> SDE:
  """Builds an SDE by registry name; unknown names list the valid ones."""
  if name.lower() not in SDES:
    raise ValueError(f"unknown SDE {name!r}; valid choices: {sorted(SDES)}")
  return SDES[name.lower()](**kwargs)

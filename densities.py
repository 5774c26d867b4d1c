"""Analytic densities with exact scores: the oracle that tests and experiments use.

A mixture of isotropic Gaussians stays a mixture of isotropic Gaussians under every
linear SDE of `sde_lib`: component N(mu_k, s_k^2 I) becomes
N(alpha(t) mu_k, (alpha(t)^2 s_k^2 + sigma(t)^2) I) at time t, so log p_t and its score
are exact at every t.
"""
import dataclasses
import math

import jax
import jax.numpy as jnp

import sde_lib


def _log_joint(x, means, variances, log_weights):
  """log w_k + log N(x; means_k, variances_k I), [B, K], for x [B, D], means [B or 1, K, D],
  variances [B or 1, K], log_weights [K]."""
  dim = x.shape[-1]
  sq = jnp.sum((x[:, None, :] - means) ** 2, axis=-1)
  log_comp = -0.5 * sq / variances - 0.5 * dim * jnp.log(2 * math.pi * variances)
  return log_comp + log_weights[None]


def _mixture_log_prob(x, means, variances, log_weights):
  """log sum_k w_k N(x; means_k, variances_k I), [B]."""
  return jax.nn.logsumexp(_log_joint(x, means, variances, log_weights), axis=-1)


def _mixture_score(x, means, variances, log_weights):
  """Gradient of `_mixture_log_prob` in x, in closed form (responsibility-weighted)."""
  resp = jax.nn.softmax(_log_joint(x, means, variances, log_weights), axis=-1)   # [B, K]
  return jnp.sum(resp[..., None] * (means - x[:, None, :]) / variances[..., None], axis=1)


@dataclasses.dataclass(frozen=True)
class GaussianMixture:
  """sum_k weights_k N(means_k, stds_k^2 I): means [K, D], stds [K], weights [K] (sum 1).

  Points `x` are [B, D]; times `t` are [B].
  """

  means: jax.Array
  stds: jax.Array
  weights: jax.Array

  def __post_init__(self):
    means = jnp.asarray(self.means, jnp.float32)
    stds = jnp.asarray(self.stds, jnp.float32)
    weights = jnp.asarray(self.weights, jnp.float32)
    if means.ndim != 2 or stds.shape != means.shape[:1] or weights.shape != stds.shape:
      raise ValueError(f"GaussianMixture needs means [K, D], stds [K], weights [K]; got "
                       f"{means.shape}, {stds.shape}, {weights.shape}")
    object.__setattr__(self, "means", means)
    object.__setattr__(self, "stds", stds)
    object.__setattr__(self, "weights", weights / jnp.sum(weights))

  @property
  def dim(self) -> int:
    return self.means.shape[1]

  def sample(self, key: jax.Array, n: int) -> jax.Array:
    """n samples [n, D]."""
    k_comp, k_noise = jax.random.split(key)
    comp = jax.random.categorical(k_comp, jnp.log(self.weights), shape=(n,))
    noise = jax.random.normal(k_noise, (n, self.dim))
    return self.means[comp] + self.stds[comp, None] * noise

  def _params_t(self, sde: sde_lib.SDE, t: jax.Array):
    alpha, sigma = sde.marginal(t)                                   # [B]
    means = alpha[:, None, None] * self.means[None]                   # [B, K, D]
    variances = alpha[:, None] ** 2 * self.stds[None] ** 2 + sigma[:, None] ** 2
    return means, variances, jnp.log(self.weights)

  def log_prob(self, x: jax.Array) -> jax.Array:
    """Exact log-density [B] of the data distribution."""
    return _mixture_log_prob(x, self.means[None], self.stds[None] ** 2, jnp.log(self.weights))

  def score(self, x: jax.Array) -> jax.Array:
    """Exact score grad_x log p(x), [B, D]."""
    return _mixture_score(x, self.means[None], self.stds[None] ** 2, jnp.log(self.weights))

  def smoothed(self, sigma: float) -> "GaussianMixture":
    """The data density convolved with N(0, sigma^2 I) (the DSM target density p_sigma)."""
    return GaussianMixture(self.means, jnp.sqrt(self.stds**2 + sigma**2), self.weights)

  def log_prob_t(self, sde: sde_lib.SDE, x: jax.Array, t: jax.Array) -> jax.Array:
    """Exact log p_t(x) [B] of the marginal at time t under `sde`."""
    return _mixture_log_prob(x, *self._params_t(sde, t))

  def component(self, k: int) -> "GaussianMixture":
    """Component k alone (the class-conditional density p(x | c = k))."""
    return GaussianMixture(self.means[k:k + 1], self.stds[k:k + 1], jnp.ones(1))

  def log_responsibilities_t(self, sde: sde_lib.SDE, x: jax.Array, t: jax.Array) -> jax.Array:
    """log p_t(c = k | x) [B, K]: the exact noise-conditional classifier of the components."""
    log_joint = _log_joint(x, *self._params_t(sde, t))
    return log_joint - jax.nn.logsumexp(log_joint, axis=-1, keepdims=True)

  def conditional(self, known: jax.Array, num_known: int) -> "GaussianMixture":
    """p(x_rest | x_first = known): the first `num_known` coordinates fixed at `known`
    [num_known]; a mixture over the remaining coordinates with reweighted components
    (weights_k N(known; means_k[:num_known], stds_k^2 I) normalized)."""
    head = GaussianMixture(self.means[:, :num_known], self.stds, self.weights)
    log_w = _log_joint(jnp.asarray(known)[None], head.means[None], head.stds[None] ** 2,
                       jnp.log(head.weights))[0]
    return GaussianMixture(self.means[:, num_known:], self.stds, jax.nn.softmax(log_w))

  def score_fn(self, sde: sde_lib.SDE):
    """The exact score function (x [B, D], t [B]) -> grad_x log p_t(x) [B, D]."""
    def score(x, t):
      return _mixture_score(x, *self._params_t(sde, t))
    return score


def gaussian_sampler_variance(sde: sde_lib.SDE, make_sampler, num_steps: int, std: float,
                              prior_variance=None, score_fn=None) -> jax.Array:
  """The exact variance of a grid sampler's output (sampling.grid_sampler) on 1-D data
  N(0, std^2), started from x_T ~ N(0, prior_variance) (default: the exact p_T's,
  alpha(T)^2 std^2 + sigma(T)^2, so that only the discretization errs).

  The exact score is linear in x, so with the prior draw x_T and the noises z_i fixed the
  output is c_0 x_T + sum_i c_i z_i, and its law is N(0, c_0^2 prior_variance + sum c_i^2);
  the c's are its gradient. `make_sampler(sde, shape, num_steps)` builds the sampler.
  `score_fn(x, t)` replaces the exact score (it must be linear in x, e.g. a scaled
  exact score, for the result to be exact)."""
  gaussian = GaussianMixture(jnp.zeros((1, 1)), jnp.array([std]), jnp.ones(1))
  score_fn = gaussian.score_fn(sde) if score_fn is None else score_fn
  sampler = make_sampler(sde, (1, 1), num_steps)
  if prior_variance is None:
    alpha, sigma = sde.marginal(jnp.array([sde.T]))
    prior_variance = alpha[0] ** 2 * std**2 + sigma[0] ** 2

  def output(x_T, noises):
    return sampler(jax.random.PRNGKey(0), score_fn, x_T, noises)[0][0, 0]

  c_0, c = jax.grad(output, argnums=(0, 1))(jnp.zeros((1, 1)), jnp.zeros((num_steps, 1, 1)))
  return c_0[0, 0] ** 2 * prior_variance + jnp.sum(c**2)

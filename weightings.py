"""Weightings and noise-level distributions of continuous-time DSM, in the log-SNR.

Every continuous DSM loss in this library is one objective (Kingma & Gao, 2023),

    L_w = int_{lambda(T)}^{lambda(eps)} w(lambda) E[ ||sigma s(x_t, t) + z||^2 | lambda ] d lambda,

with lambda = log(alpha / sigma) and ||sigma s + z||^2 = ||eps_hat - z||^2 the epsilon
loss. A distribution p(lambda) of the noise level changes only the estimator's
variance: drawing lambda ~ p and weighting by w(lambda) / p(lambda) has expectation L_w
whatever p is. For every linear SDE |d lambda / dt| = g^2 / (2 sigma^2).

Weightings w (per unit lambda):
  "sigma2"      1 / ((T - eps) |d lambda / dt|): the uniform-t epsilon loss (score_sde's
                default, the sigma^2-weighted score loss; DDPM's "simple" loss);
  "likelihood"  2 / (T - eps): g^2-weighted score loss (Song et al., 2021b), the ELBO's
                weighting, flat in lambda;
  "min_snr"     min(1, gamma / SNR) times "sigma2" (Hang et al., 2023), SNR = e^(2 lambda);
  "sigmoid"     sigmoid(b - 2 lambda) times "likelihood": Kingma & Gao (2023)'s
                sigmoid(b - log SNR), their lambda being log SNR = 2 lambda here (b a
                hyperparameter; b -> inf is "likelihood");
  "flow_matching"  g^4 / (4 sigma^2) times "sigma2": the uniform-t loss
                ||u_hat - (alpha' x_0 + sigma' z)||^2 of a velocity u_hat = f x - g^2 s / 2
                (Lipman et al., 2023; for rectified flow ||u_hat - (z - x_0)||^2);
  "edm"         N(-lambda; P_mean, P_std^2) (e^(-2 lambda) + sigma_data^2) / sigma_data^2
                (Karras et al., 2022: ln sigma_hat ~ N(P_mean, P_std^2), sigma_hat =
                sigma / alpha = e^(-lambda), loss weight (sigma_hat^2 + sigma_data^2) /
                (sigma_hat sigma_data)^2 on the x_0 error = sigma_hat^2 ||eps_hat - z||^2).

Noise-level distributions p (each truncated to [lambda(T), lambda(eps)]):
  "uniform"       t ~ U(eps, T);
  "log_snr"       lambda uniform (Song et al., 2021b's importance sampling);
  "log_normal"    -lambda = ln sigma_hat ~ N(P_mean, P_std^2) (EDM's training noise);
  "logit_normal"  logit(t / T) ~ N(0, 1) (Esser et al., 2024, for rectified flow).

Shapes: t, lambda [B].
"""
import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
from jax.scipy import special
from jax.scipy.stats import norm

import sde_lib


@dataclasses.dataclass(frozen=True)
class Options:
  """The constants of the weightings and distributions, at their published values."""
  eps: float = 1e-5
  p_mean: float = -1.2
  p_std: float = 1.2
  sigma_data: float = 0.5
  min_snr_gamma: float = 5.0
  sigmoid_bias: float = 0.0


def dlambda_dt(sde: sde_lib.SDE, t: jax.Array) -> jax.Array:
  """|d lambda / dt| = g(t)^2 / (2 sigma(t)^2)."""
  _, g = sde.coefficients(t)
  return g**2 / (2.0 * sde.marginal(t)[1] ** 2)


def _uniform_t(sde, lam, t, o):
  del lam
  return 1.0 / ((sde.T - o.eps) * dlambda_dt(sde, t))


def _likelihood(sde, lam, t, o):
  del t
  return jnp.full_like(lam, 2.0 / (sde.T - o.eps))


WEIGHTINGS: dict[str, Callable] = {   # (sde, lambda, t, options) -> w per unit lambda
    "sigma2": _uniform_t,
    "likelihood": _likelihood,
    "min_snr": lambda sde, lam, t, o: (jnp.minimum(1.0, o.min_snr_gamma * jnp.exp(-2.0 * lam))
                                       * _uniform_t(sde, lam, t, o)),
    "sigmoid": lambda sde, lam, t, o: (jax.nn.sigmoid(o.sigmoid_bias - 2.0 * lam)
                                       * _likelihood(sde, lam, t, o)),
    "flow_matching": lambda sde, lam, t, o: (sde.coefficients(t)[1] ** 4
                                             / (4.0 * sde.marginal(t)[1] ** 2)
                                             * _uniform_t(sde, lam, t, o)),
    "edm": lambda sde, lam, t, o: (norm.pdf(-lam, o.p_mean, o.p_std)
                                   * (jnp.exp(-2.0 * lam) + o.sigma_data**2) / o.sigma_data**2),
}


def _truncated_normal(key, n, mean, std, lo, hi):
  """Draws [n] from N(mean, std^2) truncated to [lo, hi] by the inverse CDF; returns
  (values, their density)."""
  a, b = norm.cdf((lo - mean) / std), norm.cdf((hi - mean) / std)
  u = mean + std * special.ndtri(jax.random.uniform(key, (n,), minval=a, maxval=b))
  u = jnp.clip(u, lo, hi)
  return u, norm.pdf(u, mean, std) / (b - a)


def sample_noise_levels(name: str, key, n: int, sde: sde_lib.SDE, o: Options):
  """(lambda [n], t [n], p(lambda) [n]) of the distribution `name`."""
  lam_lo, lam_hi = sde.log_snr(jnp.asarray(sde.T)), sde.log_snr(jnp.asarray(o.eps))
  if name == "uniform":
    t = jax.random.uniform(key, (n,), minval=o.eps, maxval=sde.T)
    lam = sde.log_snr(t)
    return lam, t, 1.0 / ((sde.T - o.eps) * dlambda_dt(sde, t))
  if name == "log_snr":
    lam = jax.random.uniform(key, (n,), minval=lam_lo, maxval=lam_hi)
    return lam, sde.t_of_log_snr(lam, o.eps), jnp.full((n,), 1.0 / (lam_hi - lam_lo))
  if name == "log_normal":
    log_sigma_hat, density = _truncated_normal(key, n, o.p_mean, o.p_std, -lam_hi, -lam_lo)
    lam = -log_sigma_hat
    return lam, sde.t_of_log_snr(lam, o.eps), density
  if name == "logit_normal":
    lo = jnp.log(o.eps / sde.T) - jnp.log1p(-o.eps / sde.T)
    logit, logit_density = _truncated_normal(key, n, 0.0, 1.0, lo, 30.0)
    tau = jax.nn.sigmoid(logit)
    t = sde.T * tau
    t_density = logit_density / (sde.T * tau * (1.0 - tau))     # q(t) = q(logit) dlogit/dt
    return sde.log_snr(t), t, t_density / dlambda_dt(sde, t)
  raise ValueError(f"unknown noise-level distribution {name!r}; valid choices: "
                   f"{sorted(NOISE_LEVEL_DISTRIBUTIONS)}")


NOISE_LEVEL_DISTRIBUTIONS = ("uniform", "log_snr", "log_normal", "logit_normal")

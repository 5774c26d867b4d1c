"""Consistency models (Song, Dhariwal, Chen & Sutskever, 2023): distillation from a
teacher's probability-flow ODE step, training without a teacher (with the paper's N(k) and
EMA schedules), a consistency function as a score function (so that
sampling.get_consistency_sampler, and every other sampler, takes it), and the exact
consistency map of Gaussian data that checks them.

A consistency function f(x [B, ...], t [B]) -> [B, ...] maps a point of the
probability-flow ODE at time t to where the ODE lands at time eps, with f(x, eps) = x
(models.parameterizations.get_consistency_fn builds one from a network, through any
linear SDE's alpha and sigma).
"""
import jax
import jax.numpy as jnp

import densities
import sampling
import sde_lib

# Teacher ODE steps, as the few-step samplers' step(sde, score_fn, z, x, t, t_next, memory).
TEACHERS = {"heun": sampling.edm_heun_step, "ddim": sampling.ddim_step}


def as_score_fn(consistency_fn, sde: sde_lib.SDE, eps: float = 1e-3):
  """The score whose denoiser (sampling.tweedie_denoise) is f / alpha(eps):
  s(x, t) = (alpha(t) f(x, t) / alpha(eps) - x) / sigma(t)^2."""

  def score_fn(x, t):
    b = lambda v: sde_lib.batch_broadcast(v, x)
    alpha, sigma = sde.marginal(t)
    alpha_min = sde.marginal(jnp.full_like(t, eps))[0]
    return (b(alpha / alpha_min) * consistency_fn(x, t) - x) / b(sigma**2)

  return score_fn


def _self_consistency(consistency_fn, target_fn, x, t, x_next, t_next):
  """E || f(x, t) - stop_gradient(f_target(x_next, t_next)) ||^2: squared norms summed over
  data dimensions, averaged over the batch."""
  residual = consistency_fn(x, t) - jax.lax.stop_gradient(target_fn(x_next, t_next))
  return jnp.mean(jnp.sum(jnp.reshape(residual**2, (x.shape[0], -1)), axis=-1))


def distillation_loss(consistency_fn, target_fn, sde: sde_lib.SDE, teacher_score_fn, x0, key,
                      times, teacher: str = "heun"):
  """Consistency distillation (Song et al., 2023, Algorithm 2) on a batch x0 [B, ...]:
  per example a step i ~ U{0, ..., N - 1} of the decreasing grid times [N + 1] (T ... eps),
  x = alpha x0 + sigma z at t = times[i], one teacher ODE step (TEACHERS) with
  teacher_score_fn to t' = times[i + 1], and the self-consistency loss
    E || f(x, t) - stop_gradient(f_target(teacher step, t')) ||^2
  (squared norms summed over data dimensions, averaged over the batch); target_fn is the
  consistency function of the target (EMA) parameters."""
  if teacher not in TEACHERS:
    raise ValueError(f"unknown teacher {teacher!r}; valid choices: {sorted(TEACHERS)}")
  k_step, k_noise = jax.random.split(key)
  i = jax.random.randint(k_step, x0.shape[:1], 0, times.shape[0] - 1)
  t, t_next = times[i], times[i + 1]
  x = sde.perturb(x0, t, jax.random.normal(k_noise, x0.shape))
  x_next, _ = TEACHERS[teacher](sde, teacher_score_fn, jnp.zeros_like(x), x, t, t_next, None)
  return _self_consistency(consistency_fn, target_fn, x, t, x_next, t_next)


def training_loss(consistency_fn, target_fn, sde: sde_lib.SDE, x0, key, num_steps,
                  grid: str = "edm", eps: float = 1e-3):
  """Consistency training (Song et al., 2023, Algorithm 3), no teacher: per example a step
  i ~ U{0, ..., num_steps - 1} of sampling.time_grid(sde, num_steps, grid, eps) (num_steps
  may be traced: training_schedule's N(k) - 1), one noise z for both ends,
  x = alpha(t) x0 + sigma(t) z and x' = alpha(t') x0 + sigma(t') z, and the self-consistency
  loss of distillation_loss. Given x, the pair (x0, z) stands in for the exact score: for a
  consistency function linear in x, its expected gradient equals distillation's from the
  exact score with the DDIM teacher (E[x' | x] is that step; tests/test_consistency.py)."""
  k_step, k_noise = jax.random.split(key)
  i = jax.random.randint(k_step, x0.shape[:1], 0, num_steps)
  t = sampling.grid_times(sde, i / num_steps, grid, eps)
  t_next = sampling.grid_times(sde, (i + 1) / num_steps, grid, eps)
  z = jax.random.normal(k_noise, x0.shape)
  return _self_consistency(consistency_fn, target_fn, sde.perturb(x0, t, z), t,
                           sde.perturb(x0, t_next, z), t_next)


def training_schedule(k, total_steps: int, s0: int = 2, s1: int = 150, mu0: float = 0.9):
  """(N(k), mu(k)) of consistency training (Song et al., 2023, Appendix C; CIFAR-10's
  s0 = 2, s1 = 150, mu0 = 0.9): the number of grid points at training step k of
  total_steps, N(k) = ceil(sqrt(k / K ((s1 + 1)^2 - s0^2) + s0^2) - 1) + 1 (s0 at k = 0,
  s1 + 1 at k = K), and the target EMA rate mu(k) = exp(s0 log(mu0) / N(k)) (mu0 at
  k = 0). k may be traced; time_grid's num_steps is N(k) - 1."""
  n = jnp.ceil(jnp.sqrt(k / total_steps * ((s1 + 1) ** 2 - s0**2) + s0**2) - 1) + 1
  return n.astype(jnp.int32), jnp.exp(s0 * jnp.log(mu0) / n)


LOSSES = ("consistency_distillation", "consistency_training")


def get_loss_fn(name: str, consistency_fn, sde: sde_lib.SDE, teacher_score_fn=None, *,
                num_steps: int = 18, grid: str = "edm", eps: float = 1e-3,
                teacher: str = "heun", schedule_steps: int = 0):
  """loss_fn(params, x0 [B, ...], key, target_params, teacher_params, step) -> scalar of
  the train step (losses.get_train_step with `targeted`): `distillation_loss` on the grid
  sampling.time_grid(sde, num_steps, grid, eps) with one `teacher` step of
  teacher_score_fn(teacher_params), or `training_loss` on num_steps steps (with
  schedule_steps = K > 0, training_schedule's N(step) - 1 over K steps instead). The
  student is consistency_fn(params, train=True, dropout key) (models.parameterizations.
  network_consistency_fn), the target consistency_fn(target_params): the train state's
  EMA parameters."""
  if name not in LOSSES:
    raise ValueError(f"unknown consistency loss {name!r}; valid choices: {list(LOSSES)}")
  times = sampling.time_grid(sde, num_steps, grid, eps)

  def loss_fn(params, x0, key, target_params, teacher_params, step):
    student = consistency_fn(params, True, jax.random.fold_in(key, 1))
    target = consistency_fn(target_params)
    if name == "consistency_distillation":
      return distillation_loss(student, target, sde, teacher_score_fn(teacher_params), x0, key,
                               times, teacher)
    steps = training_schedule(step, schedule_steps)[0] - 1 if schedule_steps else num_steps
    return training_loss(student, target, sde, x0, key, steps, grid, eps)

  return loss_fn


def gaussian_ode_map(sde: sde_lib.SDE, std: float, t, eps: float = 1e-3):
  """The exact consistency map of data N(0, std^2 I): the probability-flow ODE from t to
  eps is x -> r x with r = std_eps / std_t [B], std_t^2 = alpha(t)^2 std^2 + sigma(t)^2 (the
  ODE is linear and carries N(0, std_t^2) to N(0, std_eps^2))."""
  marginal_std = lambda u: jnp.sqrt(sde.marginal(u)[0] ** 2 * std**2 + sde.marginal(u)[1] ** 2)
  return marginal_std(jnp.full_like(t, eps)) / marginal_std(t)


def teacher_chain_map(sde: sde_lib.SDE, std: float, times, teacher: str = "heun"):
  """The consistency map that distillation on the grid `times` [N + 1] converges to for
  data N(0, std^2) with the exact score: at times[i], the factor [N + 1] of the composed
  teacher steps from times[i] down to times[N] = eps (each step is linear in x)."""
  exact = densities.GaussianMixture(jnp.zeros((1, 1)), jnp.array([std]), jnp.ones(1)).score_fn(sde)
  step = TEACHERS[teacher]

  def down(factor, i):          # factor: the map from times[i + 1] to eps
    x = jnp.ones((1, 1))
    x_next, _ = step(sde, exact, jnp.zeros_like(x), x, times[i][None], times[i + 1][None], None)
    return factor * x_next[0, 0], factor * x_next[0, 0]

  _, factors = jax.lax.scan(down, jnp.ones(()), jnp.arange(times.shape[0] - 2, -1, -1))
  return jnp.concatenate([factors[::-1], jnp.ones(1)])

"""Score-matching objectives.

Convention (the seed report's): no factor 1/2, squared norms summed over the data
dimensions, averaged over the batch. Every loss takes `per_example=True` to return
the per-example terms [B] instead of their mean (for standard errors).

Single-noise-level objectives take `score_fn: x [B, ...] -> score [B, ...]`.
The multi-noise-level objectives that train networks take `score_fn(x, t)` and an
`sde_lib.SDE`, and perturb with its kernel x_t = alpha(t) x_0 + sigma(t) z. Their
per-level term is an `Objective`: DSM (which needs the kernel's score) or, kernel-free
on x_t ~ p_t, ISM or SSM; the time distribution and weighting are the loss's.
"""
import dataclasses
import math
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax

import divergence
import sde_lib
import weightings

batch_broadcast = sde_lib.batch_broadcast


def _sum_per_example(v: jax.Array) -> jax.Array:
  return jnp.sum(jnp.reshape(v, (v.shape[0], -1)), axis=-1)


def _reduce(terms: jax.Array, per_example: bool) -> jax.Array:
  return terms if per_example else jnp.mean(terms)


# --- Single noise level: the seed report's four objectives. -------------------------

def esm_loss(score_fn, true_score_fn, x, per_example=False):
  """Explicit score matching: E ||s(x) - grad log p(x)||^2."""
  return _reduce(_sum_per_example((score_fn(x) - true_score_fn(x)) ** 2), per_example)


ISM_ESTIMATORS = ("exact", "hutchinson")


def ism_loss(score_fn, x, key=None, estimator="exact", probe="rademacher",
             per_example=False):
  """Implicit score matching (Hyvarinen 2005): E [||s(x)||^2 + 2 tr(ds/dx)].

  estimator: "exact" (D Jacobian-vector products per batch) or "hutchinson" (one
  probe per example, `probe` in {"rademacher", "gaussian"}, drawn from `key`).
  ESM = ISM + E ||grad log p||^2 for any s (integration by parts).
  """
  if estimator == "exact":
    trace = divergence.exact(score_fn, x)
  elif estimator == "hutchinson":
    if key is None:
      raise ValueError("ism_loss(estimator='hutchinson') needs a PRNG key")
    trace = divergence.hutchinson(score_fn, x, divergence.sample_probe(key, x.shape, probe))
  else:
    raise ValueError(f"unknown ISM estimator {estimator!r}; valid choices: {list(ISM_ESTIMATORS)}")
  return _reduce(_sum_per_example(score_fn(x) ** 2) + 2 * trace, per_example)


def ssm_loss(score_fn, x, key, n_projections=1, variance_reduction=False,
             probe="gaussian", per_example=False):
  """Sliced score matching (Song et al., 2019): E_v [(v^T s)^2 + 2 v^T (ds/dx) v].

  With `variance_reduction` (SSM-VR) the first term is replaced by its expectation
  ||s||^2 over v. Either way the expectation over v is ISM.
  """
  def one_projection(k):
    v = divergence.sample_probe(k, x.shape, probe)
    s, jvp = jax.jvp(score_fn, (x,), (v,))
    first = _sum_per_example(s**2) if variance_reduction else _sum_per_example(v * s) ** 2
    return first + 2 * _sum_per_example(v * jvp)

  terms = jnp.mean(jax.vmap(one_projection)(jax.random.split(key, n_projections)), axis=0)
  return _reduce(terms, per_example)


def _student_t_score(eps, df=5.0):
  return -(df + 1) * eps / (df - 2 + eps**2)


# Unit-variance noise eps: sampler(key, shape) and d/d eps log density(eps).
# With x = x0 + sigma * eps, grad_x log q(x | x0) = (d/d eps log density) / sigma.
NOISE_KERNELS = {
    "gaussian": (jax.random.normal, lambda eps: -eps),
    "laplace": (lambda k, s: jax.random.laplace(k, s) / math.sqrt(2.0),
                lambda eps: -math.sqrt(2.0) * jnp.sign(eps)),
    "student_t": (lambda k, s: jax.random.t(k, 5.0, s) * math.sqrt(3.0 / 5.0),
                  _student_t_score),
}


def dsm_loss(score_fn, x0, key, sigma, noise="gaussian", per_example=False,
             control_variate=False):
  """Denoising score matching: E ||s(x0 + sigma eps) - grad_x log q(x | x0)||^2.

  `noise` names a unit-variance kernel of NOISE_KERNELS ("gaussian": target
  -(x - x0) / sigma^2; "laplace", scale sigma / sqrt(2): target
  -sqrt(2) sign(x - x0) / sigma; "student_t", 5 degrees of freedom). The minimizer is
  the score of the data smoothed by that kernel; DSM = ESM on it + a constant.

  `control_variate` (Gaussian kernel) subtracts (2 / sigma) eps . s(x0), which has mean
  zero (eps is independent of x0), from each term: the expected loss and gradient are
  unchanged, while the term (2 / sigma) eps . s(x0 + sigma eps), whose gradient noise
  grows as D / sigma^2, is cancelled to first order in sigma. One more network call.
  """
  if noise not in NOISE_KERNELS:
    raise ValueError(f"unknown DSM noise {noise!r}; valid choices: {sorted(NOISE_KERNELS)}")
  if control_variate and noise != "gaussian":
    raise ValueError(f"control_variate needs the gaussian DSM noise, not {noise!r}")
  sampler, log_density_grad = NOISE_KERNELS[noise]
  eps = sampler(key, x0.shape)
  target = log_density_grad(eps) / sigma
  per_term = _sum_per_example((score_fn(x0 + sigma * eps) - target) ** 2)
  if control_variate:
    per_term = per_term - 2.0 / sigma * _sum_per_example(eps * score_fn(x0))
  return _reduce(per_term, per_example)


# --- Many noise levels: the objectives that train score networks. ------------------

def _perturbed_residual(score_fn, sde, x0, t, z):
  """sigma(t) s(x_t, t) + z, [B, ...]: zero iff s equals the conditional score."""
  std = batch_broadcast(sde.marginal(t)[1], x0)
  return std * score_fn(sde.perturb(x0, t, z), t) + z


OBJECTIVES = ("dsm", "dsm_cv", "ism", "ssm")
TRACE_ESTIMATORS = ("auto", "exact", "hutchinson")
EXACT_TRACE_MAX_DIM = 16   # "auto": the exact trace (D JVPs) up to this dimension D


@dataclasses.dataclass(frozen=True)
class Objective:
  """The per-noise-level term of the multi-level losses, sigma(t)^2 times a score-matching
  loss at x_t = alpha(t) x0 + sigma(t) z, per example [B]:

    "dsm"  ||sigma s(x_t, t) + z||^2 = sigma^2 ||s - grad log q(x_t | x0)||^2 (the kernel's score);
    "dsm_cv"  DSM minus the control variate 2 sigma z . s(alpha x0, t) (`dsm_loss`'s
           control_variate at every level), which has mean zero because z is independent of
           x0 and t: DSM's expectation and expected gradient, one more network call, and to
           first order in sigma the term 2 sigma z . s(x_t, t), whose gradient noise grows as
           sigma falls, cancelled;
    "ism"  sigma^2 [||s||^2 + 2 tr(ds/dx)] (`ism_loss`): the trace exact (D Jacobian-vector
           products) or by Hutchinson (one Rademacher probe), `trace_estimator` "auto"
           choosing exact for D <= EXACT_TRACE_MAX_DIM;
    "ssm"  sigma^2 [||s||^2 + 2 v^T (ds/dx) v] (`ssm_loss` with variance reduction), averaged
           over `n_projections` Gaussian v, each one forward-mode JVP (the network's value
           comes with the first, and under vmap it is not recomputed per projection).

  ISM and SSM need only x_t ~ p_t. For every s, in expectation at each t (Hyvarinen 2005,
  Vincent 2011): DSM = sigma^2 (ESM + C), C = D / sigma^2 - J(t) Vincent's constant and
  J(t) = E ||grad log p_t||^2; ISM = SSM = sigma^2 (ESM - J). So DSM - ISM = sigma^2 (C + J)
  = D at every t: under any weighting the multi-level ISM / SSM loss is the DSM loss minus
  D times the weighting's mean, the same minimizer and the same expected gradient.
  """
  name: str = "dsm"
  n_projections: int = 1
  trace_estimator: str = "auto"

  def __post_init__(self):
    for what, value, valid in (("objective", self.name, OBJECTIVES),
                               ("trace_estimator", self.trace_estimator, TRACE_ESTIMATORS)):
      if value not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid choices: {list(valid)}")
    if self.n_projections < 1:
      raise ValueError(f"n_projections={self.n_projections}: must be >= 1")

  def __call__(self, score_fn, sde: sde_lib.SDE, x0, t, z, key) -> jax.Array:
    """[B]: x0, z [B, ...], t [B]; `key` draws the probes of ISM (Hutchinson) and SSM."""
    if self.name in ("dsm", "dsm_cv"):
      terms = _sum_per_example(_perturbed_residual(score_fn, sde, x0, t, z) ** 2)
      if self.name == "dsm_cv":
        alpha, std = (batch_broadcast(c, x0) for c in sde.marginal(t))
        terms = terms - 2.0 * _sum_per_example(std * z * score_fn(alpha * x0, t))
      return terms
    x_t = sde.perturb(x0, t, z)
    at_t = lambda x: score_fn(x, t)
    if self.name == "ssm":
      terms = ssm_loss(at_t, x_t, key, self.n_projections, variance_reduction=True,
                       per_example=True)
    else:
      terms = ism_loss(at_t, x_t, key, self.trace_method(x0.shape), per_example=True)
    return sde.marginal(t)[1] ** 2 * terms

  def trace_method(self, shape: tuple[int, ...]) -> str:
    """ISM's trace estimator for examples [B, ...] of `shape`: "exact" or "hutchinson"."""
    if self.trace_estimator != "auto":
      return self.trace_estimator
    return "exact" if math.prod(shape[1:]) <= EXACT_TRACE_MAX_DIM else "hutchinson"


DSM = Objective()
_PROBE_STREAM = 3   # the objective's probes: fold_in(loss key, 3) (get_loss_fn uses 1 and 2)


def _level_terms(objective: Objective, score_fn, sde, x0, t, z, key, reduce_mean):
  """The objective's per-example terms [B], over the data dimensions if `reduce_mean`."""
  terms = objective(score_fn, sde, x0, t, z, jax.random.fold_in(key, _PROBE_STREAM))
  return terms / math.prod(x0.shape[1:]) if reduce_mean else terms


def sde_loss(score_fn, sde: sde_lib.SDE, x0, key, *, reduce_mean=False,
             likelihood_weighting=False, importance_sampling=False, eps=1e-5,
             objective: Objective = DSM, per_example=False):
  """Continuous-time DSM (Song et al., 2021, eq. 7), t ~ U(eps, T):

    weighting sigma(t)^2 (default):  E ||sigma s(x_t, t) + z||^2
    likelihood weighting g(t)^2:     E g^2 ||s(x_t, t) + z / sigma||^2

  With `importance_sampling` (needs likelihood weighting) t is drawn with density
  proportional to g^2 / sigma^2 = -2 d lambda / dt, i.e. uniformly in the log-SNR
  lambda(t) = log(alpha / sigma) (true for every linear SDE), and reweighted so the
  expectation equals the uniform-t one. `reduce_mean` averages over data dimensions
  instead of summing. `objective` replaces the DSM term ||sigma s + z||^2 (`Objective`).
  """
  if importance_sampling and not likelihood_weighting:
    raise ValueError("importance_sampling=True requires likelihood_weighting=True")
  k_t, k_z = jax.random.split(key)
  batch = x0.shape[0]
  z = jax.random.normal(k_z, x0.shape)
  if importance_sampling:
    lam_lo, lam_hi = sde.log_snr(jnp.asarray(sde.T)), sde.log_snr(jnp.asarray(eps))
    lam = jax.random.uniform(k_t, (batch,), minval=lam_lo, maxval=lam_hi)
    t = sde.t_of_log_snr(lam, eps)
    weight = 2 * (lam_hi - lam_lo) / (sde.T - eps)   # g^2 / (q(t) (T - eps)) / sigma^2
  else:
    t = jax.random.uniform(k_t, (batch,), minval=eps, maxval=sde.T)
    if likelihood_weighting:
      _, g = sde.coefficients(t)
      weight = (g / sde.marginal(t)[1]) ** 2
    else:
      weight = jnp.ones((batch,))
  terms = weight * _level_terms(objective, score_fn, sde, x0, t, z, key, reduce_mean)
  return _reduce(terms, per_example)


def weighted_loss(score_fn, sde: sde_lib.SDE, x0, key, *, weighting="sigma2",
                  noise_levels="uniform", reduce_mean=False, eps=1e-5, p_mean=-1.2,
                  p_std=1.2, sigma_data=0.5, min_snr_gamma=5.0, sigmoid_bias=0.0,
                  objective: Objective = DSM, per_example=False):
  """Continuous-time DSM with any weighting w(lambda) of weightings.WEIGHTINGS, its noise
  levels drawn from weightings.NOISE_LEVEL_DISTRIBUTIONS and reweighted by w / p:

    E_{lambda ~ p} [ w(lambda) / p(lambda) ||sigma s(x_t, t) + z||^2 ]

  (weightings.py states each). ("sigma2", "uniform") is `sde_loss`'s default estimator,
  ("likelihood", "uniform") its likelihood weighting and ("likelihood", "log_snr") its
  importance sampling, draw for draw; ("edm", "log_normal") is EDM's loss. `objective`
  replaces the DSM term (`Objective`)."""
  if weighting not in weightings.WEIGHTINGS:
    raise ValueError(f"unknown weighting {weighting!r}; valid choices: "
                     f"{sorted(weightings.WEIGHTINGS)}")
  options = weightings.Options(eps, p_mean, p_std, sigma_data, min_snr_gamma, sigmoid_bias)
  k_t, k_z = jax.random.split(key)
  lam, t, density = weightings.sample_noise_levels(noise_levels, k_t, x0.shape[0], sde, options)
  weight = weightings.WEIGHTINGS[weighting](sde, lam, t, options) / density
  z = jax.random.normal(k_z, x0.shape)
  terms = weight * _level_terms(objective, score_fn, sde, x0, t, z, key, reduce_mean)
  return _reduce(terms, per_example)


def _discrete_level_loss(score_fn, sde, x0, key, times, reduce_mean, objective, per_example):
  k_i, k_z = jax.random.split(key)
  t = times[jax.random.randint(k_i, (x0.shape[0],), 0, times.shape[0])]
  z = jax.random.normal(k_z, x0.shape)
  return _reduce(_level_terms(objective, score_fn, sde, x0, t, z, key, reduce_mean), per_example)


def smld_loss(score_fn, sde: sde_lib.SDE, x0, key, *, reduce_mean=False,
              objective: Objective = DSM, per_example=False):
  """SMLD / NCSN loss (Song & Ermon, 2019) with sigma^2 weighting, on N levels.

  The levels are the SDE's marginals at t_i = T i / (N - 1), i = 0..N-1; for the VE
  SDE these are the geometric sigma_min ... sigma_max of NCSN.
  """
  times = sde.T * jnp.arange(sde.N) / max(sde.N - 1, 1)
  return _discrete_level_loss(score_fn, sde, x0, key, times, reduce_mean, objective,
                              per_example)


def ddpm_loss(score_fn, sde: sde_lib.SDE, x0, key, *, reduce_mean=True,
              objective: Objective = DSM, per_example=False):
  """DDPM epsilon loss (Ho et al., 2020), E ||eps_hat - z||^2 with eps_hat = -sigma s,
  on the N steps t_i = T (i + 1) / N, i = 0..N-1 (the VP SDE's DDPM chain)."""
  times = sde.T * (jnp.arange(sde.N) + 1) / sde.N
  return _discrete_level_loss(score_fn, sde, x0, key, times, reduce_mean, objective,
                              per_example)


MULTI_LEVEL_LOSSES = {"continuous": sde_loss, "weighted": weighted_loss, "smld": smld_loss,
                      "ddpm": ddpm_loss}


def get_multi_level_loss(name: str, *, reduce_mean: bool = False, objective: Objective = DSM,
                         eps: float = 1e-5, sigma_data: float = 0.5,
                         likelihood_weighting: bool = False, importance_sampling: bool = False,
                         weighted=None) -> Callable:
  """loss(score_fn, sde, x0, key) of MULTI_LEVEL_LOSSES[name] with the settings it takes:
  every loss reduce_mean and objective; "continuous" also likelihood_weighting,
  importance_sampling and eps; "weighted" eps, sigma_data and the dict `weighted` (its
  weighting, noise levels and their parameters: `weighted_loss`'s keywords)."""
  if name not in MULTI_LEVEL_LOSSES:
    raise ValueError(f"unknown loss {name!r}; valid choices: {sorted(MULTI_LEVEL_LOSSES)}")
  kwargs = dict(reduce_mean=reduce_mean, objective=objective)
  if name == "continuous":
    kwargs.update(likelihood_weighting=likelihood_weighting,
                  importance_sampling=importance_sampling, eps=eps)
  elif name == "weighted":
    kwargs.update(eps=eps, sigma_data=sigma_data, **(weighted or {}))
  loss = MULTI_LEVEL_LOSSES[name]
  return lambda score_fn, sde, x0, key: loss(score_fn, sde, x0, key, **kwargs)


def get_loss_fn(loss: Callable, score_fn: Callable, sde: sde_lib.SDE, num_classes: int = 0,
                label_dropout: float = 0.0) -> Callable:
  """loss_fn(params, batch, key, train=True) -> scalar: `loss(s, sde, x0, key)` of the
  network score s = score_fn(params, train, dropout key, labels). batch: x0, or (x0,
  labels [B]) for a class-conditional network (num_classes > 0), whose labels become the
  null label num_classes with probability label_dropout in training (classifier-free
  guidance's training)."""

  def loss_fn(params, batch, key, train=True):
    x0, labels = batch if num_classes else (batch, None)
    if labels is not None and train and label_dropout:
      drop = jax.random.bernoulli(jax.random.fold_in(key, 2), label_dropout, labels.shape)
      labels = jnp.where(drop, num_classes, labels)
    return loss(score_fn(params, train, jax.random.fold_in(key, 1), labels), sde, x0, key)

  return loss_fn


# --- The train step. ----------------------------------------------------------------

@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs, and nothing derivable from the config."""
  step: jax.Array
  params: Any
  opt_state: Any
  ema_params: Any


def get_train_step(loss_fn: Callable, optimizer: optax.GradientTransformation,
                   ema_decay: Callable, unroll: bool = False, accumulation_steps: int = 1,
                   targeted: bool = False):
  """Returns train_step(state, batch, base_key, frozen=None) -> (state, metrics).

  `loss_fn(params, x0, key) -> scalar`, or with `targeted` `loss_fn(params, x0, key,
  target_params, frozen, step)`: the state's EMA parameters (a consistency model's
  target), the frozen parameters passed to the step (a distillation teacher's) and the
  step's index (consistency.get_loss_fn); `batch` is [n_steps, B, ...] (or a pytree of
  such arrays, e.g. (images, labels)): n_steps optimizer steps run under `lax.scan` (one
  step runs without a loop), or one after another without a loop if `unroll` (n_steps
  copies of the step to compile: XLA:CPU compiles convolution gradients inside a loop
  body to slow generic loops, see benchmarks/README.md).

  Example i of step s is `loss_fn` of that example alone (a batch of one, under vmap)
  with key fold_in(fold_in(base_key, s), i): its noise depends on the step and its index
  in the step's batch only, so a run resumed from a checkpoint continues exactly, and a
  step's value does not depend on how its batch is split. With `accumulation_steps = k`
  (B divisible by k) the step's gradient is the mean of k microbatch gradients, the
  examples i = m mod k for m = 0 ... k - 1 taken one microbatch at a time under
  `lax.scan` (the memory of B / k examples): the full-batch gradient up to the order of
  float sums. (Strided microbatches keep each device's share of a batch split along its
  first axis on that device.) The EMA decay of step s is `ema_decay(s)` (ema.decay_fn).
  Pure; devices are the caller's.
  """
  def mean_loss(params, examples, keys, extra):
    one = lambda x, key: loss_fn(params, jax.tree_util.tree_map(lambda a: a[None], x), key,
                                 *extra)
    return jnp.mean(jax.vmap(one)(examples, keys))

  def loss_and_grads(params, x0, key, extra):
    n = jax.tree_util.tree_leaves(x0)[0].shape[0]
    keys = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(n))
    if accumulation_steps == 1:
      return jax.value_and_grad(mean_loss)(params, x0, keys, extra)
    k = accumulation_steps
    microbatches = jax.tree_util.tree_map(          # [k, B / k, ...]: examples m, m + k, ...
        lambda a: jnp.swapaxes(a.reshape(n // k, k, *a.shape[1:]), 0, 1), (x0, keys))

    def add_microbatch(total, microbatch):
      value_and_grads = jax.value_and_grad(mean_loss)(params, *microbatch, extra)
      return jax.tree_util.tree_map(jnp.add, total, value_and_grads), None

    zeros = jax.tree_util.tree_map(jnp.zeros_like, (jnp.zeros(()), params))
    total, _ = jax.lax.scan(add_microbatch, zeros, microbatches, unroll=unroll)
    return jax.tree_util.tree_map(lambda v: v / k, total)

  def train_step(state: TrainState, batch, base_key, frozen=None):
    def one_step(state: TrainState, x0):
      key = jax.random.fold_in(base_key, state.step)
      extra = (state.ema_params, frozen, state.step) if targeted else ()
      loss, grads = loss_and_grads(state.params, x0, key, extra)
      updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
      params = optax.apply_updates(state.params, updates)
      decay = ema_decay(state.step)
      ema_params = jax.tree_util.tree_map(lambda e, p: decay * e + (1.0 - decay) * p,
                                          state.ema_params, params)
      return TrainState(state.step + 1, params, opt_state, ema_params), loss

    if jax.tree_util.tree_leaves(batch)[0].shape[0] == 1:
      state, loss = one_step(state, jax.tree_util.tree_map(lambda b: b[0], batch))
      return state, {"loss": loss}
    state, step_losses = jax.lax.scan(one_step, state, batch, unroll=unroll)
    return state, {"loss": jnp.mean(step_losses)}

  return train_step

"""Score-matching objectives against exact identities (Hyvarinen 2005, Vincent 2010) and
the oracle score of a Gaussian mixture."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import datasets
import densities
import losses
import sde_lib
from models import mlp
from models import parameterizations
from tests import stats

GMM = datasets.gaussian_mixture()


def _candidate_scores():
  """Several score functions x [B, 2] -> [B, 2], none of them the true one."""
  a = jnp.array([[-0.8, 0.3], [0.1, -1.2]])
  return {
      "minus_x": lambda x: -x,
      "affine": lambda x: x @ a.T + jnp.array([[0.5, -0.2]]),
      "tanh": lambda x: jnp.tanh(x @ a) - 0.3 * x,
      "true": GMM.score,
  }


@pytest.mark.parametrize("name", sorted(_candidate_scores()))
def test_esm_minus_ism_is_the_fisher_information(name):
  """Hyvarinen: ESM(s) - ISM(s) = E ||grad log p||^2 for every s (paired per example)."""
  score_fn = _candidate_scores()[name]
  x = GMM.sample(jax.random.PRNGKey(0), 20_000)
  esm = losses.esm_loss(score_fn, GMM.score, x, per_example=True)
  ism = losses.ism_loss(score_fn, x, per_example=True)
  fisher = jnp.sum(GMM.score(x) ** 2, axis=-1)
  # Per example the two differ (the identity is integration by parts, in expectation).
  stats.assert_mean_close(esm - ism - fisher, 0.0, what=name)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_ism_and_ssm_are_unbiased_for_exact_ism(probe):
  score_fn = _candidate_scores()["tanh"]
  x = GMM.sample(jax.random.PRNGKey(1), 64)
  exact = float(losses.ism_loss(score_fn, x))
  keys = jax.random.split(jax.random.PRNGKey(2), 4000)
  estimators = {
      "ism_hutchinson": lambda k: losses.ism_loss(score_fn, x, k, "hutchinson", probe),
      "ssm": lambda k: losses.ssm_loss(score_fn, x, k, probe=probe),
      "ssm_vr": lambda k: losses.ssm_loss(score_fn, x, k, variance_reduction=True, probe=probe),
      "ssm_4_projections": lambda k: losses.ssm_loss(score_fn, x, k, 4, probe=probe),
  }
  for what, estimate in estimators.items():
    values = np.asarray(jax.jit(jax.vmap(estimate))(keys))
    stats.assert_mean_close(values, exact, what=what)
    assert np.std(values) > 0  # it is a random estimate, not the exact value in disguise


def test_ism_hutchinson_needs_a_key_and_a_known_estimator():
  with pytest.raises(ValueError, match="PRNG key"):
    losses.ism_loss(GMM.score, jnp.zeros((2, 2)), estimator="hutchinson")
  with pytest.raises(ValueError, match="'sliced'.*exact"):
    losses.ism_loss(GMM.score, jnp.zeros((2, 2)), estimator="sliced")
  with pytest.raises(ValueError, match="'uniform'.*gaussian"):
    losses.dsm_loss(GMM.score, jnp.zeros((2, 2)), jax.random.PRNGKey(0), 0.1, noise="uniform")


MIXTURE_1D = densities.GaussianMixture(means=jnp.array([[-2.0], [1.0], [3.0]]),
                                       stds=jnp.array([0.3, 0.8, 0.5]),
                                       weights=jnp.array([0.2, 0.5, 0.3]))


def _exact_vincent_constant(gmm, sigma):
  """C = E ||grad log q(x | x0)||^2 - E_{p_sigma} ||grad log p_sigma||^2, by quadrature (1-D)."""
  smoothed = gmm.smoothed(sigma)
  grid = np.linspace(-15.0, 15.0, 200_001)
  x = jnp.asarray(grid[:, None])
  density = np.exp(np.asarray(smoothed.log_prob(x), np.float64))
  fisher = np.trapezoid(density * np.asarray(smoothed.score(x), np.float64)[:, 0] ** 2, grid)
  return 1.0 / sigma**2 - fisher


@pytest.mark.parametrize("sigma", [0.3, 1.0])
def test_dsm_minus_esm_on_the_smoothed_density_is_vincents_constant(sigma):
  """Vincent (2010): DSM(s) = ESM_{p_sigma}(s) + C, C computed exactly (seed question 8)."""
  smoothed = MIXTURE_1D.smoothed(sigma)
  c_exact = _exact_vincent_constant(MIXTURE_1D, sigma)
  n = 400_000
  x0 = MIXTURE_1D.sample(jax.random.PRNGKey(3), n)
  x_sigma = smoothed.sample(jax.random.PRNGKey(4), n)
  for name, score_fn in {"minus_x": lambda x: -x, "tanh": lambda x: jnp.tanh(2 * x) - 0.5 * x,
                         "smoothed_score": smoothed.score}.items():
    dsm = np.asarray(losses.dsm_loss(score_fn, x0, jax.random.PRNGKey(5), sigma, per_example=True))
    esm = np.asarray(losses.esm_loss(score_fn, smoothed.score, x_sigma, per_example=True))
    se = np.hypot(stats.standard_error(dsm), stats.standard_error(esm))
    gap = dsm.mean() - esm.mean()
    assert abs(gap - c_exact) < stats.Z * se, (name, gap, c_exact, se)


def test_dsm_control_variate_is_unbiased_and_cuts_the_gradient_noise():
  """The control variate -(2 / sigma) eps . s(x0) has mean zero: the loss and its gradient
  keep their expectations (within 4 SE over 2^16 per-example draws; a variate built on
  s(x0 + sigma eps) instead, not zero-mean, shifts the loss by 0.56, 5.4 SE, measured),
  while the per-example gradient variance at sigma = 0.05 falls 494-fold (measured;
  asserted > 20-fold)."""
  sigma, n = 0.05, 2**16
  x0 = GMM.sample(jax.random.PRNGKey(0), n)
  key = jax.random.PRNGKey(1)
  weights = {"w1": jax.random.normal(jax.random.PRNGKey(2), (2, 32)) / np.sqrt(2),
             "w2": jax.random.normal(jax.random.PRNGKey(3), (32, 2)) / np.sqrt(32)}
  score = lambda p: lambda x: jnp.tanh(x @ p["w1"]) @ p["w2"]
  plain = losses.dsm_loss(score(weights), x0, key, sigma, per_example=True)
  controlled = losses.dsm_loss(score(weights), x0, key, sigma, per_example=True,
                               control_variate=True)
  gap = np.asarray(controlled - plain)
  assert abs(gap.mean()) < stats.Z * stats.standard_error(gap), gap.mean()

  def per_example_grads(control_variate):
    loss = lambda p, x, k: losses.dsm_loss(score(p), x[None], k, sigma,
                                           control_variate=control_variate)
    grads = jax.vmap(jax.grad(loss), in_axes=(None, 0, 0))(weights, x0, jax.random.split(key, n))
    return np.concatenate([np.asarray(g).reshape(n, -1) for g in jax.tree_util.tree_leaves(grads)], 1)

  g_plain, g_controlled = per_example_grads(False), per_example_grads(True)
  se = np.sqrt((g_plain.var(0) + g_controlled.var(0)) / n)
  assert np.all(np.abs(g_plain.mean(0) - g_controlled.mean(0)) < stats.Z * se)
  assert g_plain.var(0).sum() > 20 * g_controlled.var(0).sum(), (
      g_plain.var(0).sum(), g_controlled.var(0).sum())
  with pytest.raises(ValueError, match="control_variate needs the gaussian"):
    losses.dsm_loss(score(weights), x0, key, sigma, noise="laplace", control_variate=True)


# --- Multi-noise-level losses. ------------------------------------------------------

SDES = {"ve": sde_lib.VESDE(sigma_min=0.01, sigma_max=10.0, N=100),
        "vp": sde_lib.VPSDE(N=100), "subvp": sde_lib.subVPSDE(N=100)}
MULTI_LEVEL = {
    "continuous": losses.sde_loss,
    "continuous_reduce_mean": functools.partial(losses.sde_loss, reduce_mean=True),
    "likelihood_weighting": functools.partial(losses.sde_loss, likelihood_weighting=True),
    "importance_sampling": functools.partial(losses.sde_loss, likelihood_weighting=True,
                                             importance_sampling=True),
    "smld": losses.smld_loss,
    "ddpm": losses.ddpm_loss,
}


def _perturbed_score_fn(sde, theta):
  """The exact score plus theta . (x, 1, sin x): theta = 0 is the exact score."""
  exact = GMM.score_fn(sde)
  return lambda x, t: exact(x, t) + theta[0] * x + theta[1] + theta[2] * jnp.sin(x)


@pytest.mark.parametrize("loss_name", sorted(MULTI_LEVEL))
@pytest.mark.parametrize("sde_name", sorted(SDES))
def test_multi_level_loss_has_zero_gradient_at_the_exact_score(loss_name, sde_name):
  sde, loss_fn = SDES[sde_name], MULTI_LEVEL[loss_name]
  x0 = GMM.sample(jax.random.PRNGKey(6), 20_000)

  def per_example_grad(theta):
    terms = lambda th: loss_fn(_perturbed_score_fn(sde, th), sde, x0, jax.random.PRNGKey(7),
                               per_example=True)
    return np.asarray(jax.jit(jax.jacfwd(terms))(theta))     # [B, 3]

  at_exact = per_example_grad(jnp.zeros(3))
  for j in range(3):
    stats.assert_mean_close(at_exact[:, j], 0.0, what=f"d loss / d theta_{j} at the exact score")
  # Away from the exact score the same check fails: the test has power.
  away = per_example_grad(jnp.array([0.3, 0.0, 0.0]))
  assert abs(away[:, 0].mean()) > stats.Z * stats.standard_error(away[:, 0])


def _fisher_information(sde, times, n=20_000):
  """J(t) = E_{x ~ p_t} ||grad log p_t(x)||^2 at each of times [K] by Monte Carlo with
  the exact score: (J [K], its standard errors [K])."""
  @jax.jit
  def squared_norms(t, key):
    k_0, k_z = jax.random.split(key)
    x0 = GMM.sample(k_0, n)
    alpha, sigma = sde.marginal(jnp.full((n,), t))
    x_t = alpha[:, None] * x0 + sigma[:, None] * jax.random.normal(k_z, x0.shape)
    return jnp.sum(GMM.score_fn(sde)(x_t, jnp.full((n,), t)) ** 2, axis=1)

  values = [np.asarray(squared_norms(t, jax.random.PRNGKey(100 + i)), np.float64)
            for i, t in enumerate(np.asarray(times))]
  return np.array([v.mean() for v in values]), np.array([stats.standard_error(v) for v in values])


# (loss, SDE, weight w(t) of D - sigma^2 J, divide by D, t range of the uniform draw)
EXACT_VALUE_CASES = {
    "continuous-vp": ("continuous", "vp", lambda sde, t: 1.0, False),
    "continuous-ve": ("continuous", "ve", lambda sde, t: 1.0, False),
    "reduce_mean-subvp": ("continuous_reduce_mean", "subvp", lambda sde, t: 1.0, True),
    "likelihood-vp": ("likelihood_weighting_eps", "vp",
                      lambda sde, t: (sde.coefficients(t)[1] / sde.marginal(t)[1]) ** 2, False),
    "smld-ve": ("smld", "ve", None, False),
    "ddpm-vp": ("ddpm", "vp", None, True),             # DDPM's loss is a mean over pixels
}
# The kernel-free objectives (losses.Objective): D - sigma^2 J becomes -sigma^2 J.
KERNEL_FREE_EXACT_VALUE_CASES = {"continuous-vp": "ssm", "continuous-ve": "ism",
                                 "reduce_mean-subvp": "ism", "smld-ve": "ssm"}


@pytest.mark.parametrize("case, objective", [
    *((case, "dsm") for case in sorted(EXACT_VALUE_CASES)),
    *sorted(KERNEL_FREE_EXACT_VALUE_CASES.items())])
def test_multi_level_loss_at_the_exact_score_has_its_exact_value(case, objective):
  """At the exact score s*, E ||sigma s*(x_t) + z||^2 = D - sigma^2 J(t) (Tweedie:
  E[z | x_t] = -sigma s*), so each loss's expectation is its weighting and time
  distribution applied to D - sigma(t)^2 J(t), J(t) the Fisher information of p_t: a
  wrong weighting, level grid or normalization changes it (the zero-gradient test above
  holds for any of them). Continuous time: Gauss-Legendre in log t (48 nodes) over the
  uniform draw on [eps, T]; discrete grids: the mean over their levels. J by Monte Carlo;
  the tolerance combines both standard errors (below 1% of the value in every case). ISM /
  SSM (at 400k points, one probe each): -sigma^2 J in place of D - sigma^2 J, the Fisher
  information of the mixture under each SDE."""
  loss_name, sde_name, weight, reduce_mean = EXACT_VALUE_CASES[case]
  sde, dim = SDES[sde_name], 2
  kernel_term = dim if objective == "dsm" else 0.0     # E ||z||^2: DSM's target, not theirs
  loss_fn = {**MULTI_LEVEL, "likelihood_weighting_eps": functools.partial(
      losses.sde_loss, likelihood_weighting=True, eps=1e-2)}[loss_name]
  x0 = GMM.sample(jax.random.PRNGKey(11), 400_000)
  terms = np.asarray(jax.jit(lambda x: loss_fn(
      GMM.score_fn(sde), sde, x, jax.random.PRNGKey(12), per_example=True,
      objective=losses.Objective(objective)))(x0), np.float64)
  if weight is None:                                   # the discrete grids of losses.py
    times = (sde.T * np.arange(sde.N) / (sde.N - 1) if loss_name == "smld"
             else sde.T * (np.arange(sde.N) + 1) / sde.N)
    fisher, fisher_se = _fisher_information(sde, times, n=5_000)
    sigma2 = np.asarray(sde.marginal(jnp.asarray(times))[1], np.float64) ** 2
    expected = np.mean(kernel_term - sigma2 * fisher)
    expected_se = np.sqrt(np.sum((sigma2 * fisher_se) ** 2)) / sde.N
  else:
    eps = 1e-2 if loss_name == "likelihood_weighting_eps" else 1e-5
    nodes, quad_weights = np.polynomial.legendre.leggauss(48)
    log_lo, log_hi = np.log(eps), np.log(sde.T)
    times = np.exp(log_lo + (nodes + 1) / 2 * (log_hi - log_lo))
    dt = quad_weights * (log_hi - log_lo) / 2 * times          # dt = t d(log t)
    fisher, fisher_se = _fisher_information(sde, times)
    t = jnp.asarray(times)
    sigma2 = np.asarray(sde.marginal(t)[1], np.float64) ** 2
    w = np.broadcast_to(np.asarray(weight(sde, t), np.float64), times.shape)
    expected = np.sum(dt * w * (kernel_term - sigma2 * fisher)) / (sde.T - eps)
    expected_se = np.sqrt(np.sum((dt * w * sigma2 * fisher_se) ** 2)) / (sde.T - eps)
  if reduce_mean:
    expected, expected_se = expected / dim, expected_se / dim
  se = np.hypot(stats.standard_error(terms), expected_se)
  assert abs(terms.mean() - expected) < stats.Z * se, (case, terms.mean(), expected, se)
  assert se < 0.01 * abs(expected)          # 4 SE resolve a 4% error in weight or grid


def test_importance_sampling_has_the_expectation_of_uniform_times():
  sde = SDES["vp"]
  score_fn = _perturbed_score_fn(sde, jnp.array([0.2, 0.1, 0.0]))
  x0 = GMM.sample(jax.random.PRNGKey(8), 200_000)
  uniform = losses.sde_loss(score_fn, sde, x0, jax.random.PRNGKey(9), likelihood_weighting=True,
                            per_example=True)
  weighted = losses.sde_loss(score_fn, sde, x0, jax.random.PRNGKey(10), likelihood_weighting=True,
                             importance_sampling=True, per_example=True)
  se = np.hypot(stats.standard_error(uniform), stats.standard_error(weighted))
  assert abs(float(uniform.mean() - weighted.mean())) < stats.Z * se
  assert stats.standard_error(weighted) < stats.standard_error(uniform)   # why one samples so


@pytest.mark.parametrize("loss_name, sde_name", [("continuous", "subvp"), ("smld", "ve"),
                                                 ("ddpm", "vp")])
def test_multi_level_loss_decreases_when_training_a_small_mlp(loss_name, sde_name):
  sde, loss_fn = SDES[sde_name], MULTI_LEVEL[loss_name]
  model = mlp.MLP(mlp.MLPConfig(hidden=64, depth=2))
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)), jnp.zeros((1,)))
  optimizer = optax.adam(3e-3)

  def loss(params, key):
    score_fn = parameterizations.get_score_fn(model.apply, params, sde, "noise")
    k_data, k_loss = jax.random.split(key)
    return loss_fn(score_fn, sde, GMM.sample(k_data, 256), k_loss)

  @jax.jit
  def train(params):
    def step(carry, key):
      params, opt_state = carry
      grads = jax.grad(loss)(params, key)
      updates, opt_state = optimizer.update(grads, opt_state)
      return (optax.apply_updates(params, updates), opt_state), None
    keys = jax.random.split(jax.random.PRNGKey(1), 300)
    return jax.lax.scan(step, (params, optimizer.init(params)), keys)[0][0]

  eval_keys = jax.random.split(jax.random.PRNGKey(2), 64)
  evaluate = jax.jit(lambda p: jax.vmap(lambda k: loss(p, k))(eval_keys))
  before, after = np.asarray(evaluate(params)), np.asarray(evaluate(train(params)))
  gain = before - after     # paired: the same data and noise before and after
  assert gain.mean() > stats.Z * stats.standard_error(gain), (before.mean(), after.mean())


@pytest.mark.parametrize("noise", sorted(losses.NOISE_KERNELS))
def test_dsm_kernel_targets_are_the_scores_of_their_unit_variance_kernels(noise):
  """Stein's identity E[g(eps) f(eps) + f'(eps)] = 0 holds for all test functions f iff g
  is the score of eps's density: checked for f = eps, tanh(eps), sin(2 eps), plus unit
  variance. A target off by a constant factor (Laplace without its sqrt 2, Student-t
  with df in place of df - 2) misses the first by 0.29 (300 standard errors)."""
  sampler, score = losses.NOISE_KERNELS[noise]
  eps = np.asarray(sampler(jax.random.PRNGKey(0), (1_000_000,)), np.float64)
  g = np.asarray(score(jnp.asarray(eps, jnp.float32)), np.float64)
  stats.assert_mean_close(eps**2, 1.0, what=f"{noise}: variance")
  for name, f, df in (("eps", eps, np.ones_like(eps)),
                      ("tanh", np.tanh(eps), 1.0 / np.cosh(eps) ** 2),
                      ("sin", np.sin(2 * eps), 2 * np.cos(2 * eps))):
    stats.assert_mean_close(g * f + df, 0.0, what=f"{noise}: Stein with f = {name}")


def test_unrolled_train_steps_equal_the_scanned_ones_without_a_loop():
  """get_train_step(unroll=True), which build.py uses on the CPU for convolutional
  networks, takes the same optimizer steps as lax.scan, and compiles to a program without
  a loop, whose convolution gradients XLA:CPU runs on its fast kernels (inside a loop body
  it compiles them to generic loops, "outer_dimension_partitions", 25-150x slower)."""
  import flax.linen as nn   # pylint: disable=g-import-not-at-top

  class ConvNet(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.Conv(3, (3, 3))(jax.nn.silu(nn.Conv(8, (3, 3))(x)))

  net = ConvNet()
  batch = jax.random.normal(jax.random.PRNGKey(0), (3, 4, 8, 8, 3))      # 3 steps
  params = net.init(jax.random.PRNGKey(1), batch[0])
  optimizer = optax.adam(1e-2)
  loss_fn = lambda p, x0, key: jnp.mean((net.apply(p, x0 + jax.random.normal(key, x0.shape))
                                         - x0) ** 2)
  state = losses.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                            opt_state=optimizer.init(params), ema_params=params)
  results, programs = [], []
  for unroll in (False, True):
    step = jax.jit(losses.get_train_step(loss_fn, optimizer, lambda s: 0.5, unroll=unroll))
    compiled = step.lower(state, batch, jax.random.PRNGKey(2)).compile()
    results.append(compiled(state, batch, jax.random.PRNGKey(2)))
    programs.append(compiled.as_text())
  (scanned, scanned_metrics), (unrolled, unrolled_metrics) = results
  assert int(unrolled.step) == 3
  np.testing.assert_allclose(unrolled_metrics["loss"], scanned_metrics["loss"], rtol=1e-5)
  for a, b in zip(jax.tree_util.tree_leaves(unrolled), jax.tree_util.tree_leaves(scanned)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  convolutions = [[line for line in program.splitlines() if " convolution(" in line]
                  for program in programs]
  # per step: 2 forward convolutions, 1 input and 2 weight gradients; once in the loop body
  assert len(convolutions[0]) == 5 and len(convolutions[1]) == 3 * 5
  if jax.default_backend() == "cpu":
    assert not any("outer_dimension_partitions" in line for line in convolutions[1])


# --- Kernel-free objectives at every noise level (losses.Objective). ---------------

DIM = 2
# (loss, SDE, the weight's mean over the loss's time draw, per data dimension if reduce_mean):
# DSM - ISM = sigma^2 (C + J) = D at every t for every s, so the multi-level gap is D times
# the mean weight (likelihood weighting: 2 (lambda(eps) - lambda(T)) / (T - eps)).
_LIKELIHOOD_IS = functools.partial(losses.sde_loss, likelihood_weighting=True,
                                   importance_sampling=True)
_MEAN_LIKELIHOOD_WEIGHT = lambda sde: float(
    2 * (sde.log_snr(jnp.asarray(1e-5)) - sde.log_snr(jnp.asarray(sde.T))) / (sde.T - 1e-5))
IDENTITY_CASES = {
    **{f"continuous-{name}": (losses.sde_loss, name, lambda sde: DIM) for name in SDES},
    "likelihood_is-vp": (_LIKELIHOOD_IS, "vp", lambda sde: DIM * _MEAN_LIKELIHOOD_WEIGHT(sde)),
    "reduce_mean-subvp": (functools.partial(losses.sde_loss, reduce_mean=True), "subvp",
                          lambda sde: 1.0),
    "weighted_min_snr-vp": (functools.partial(losses.weighted_loss, weighting="min_snr",
                                              noise_levels="log_snr"), "vp", None),
    "smld-ve": (losses.smld_loss, "ve", lambda sde: DIM),
    "ddpm-vp": (losses.ddpm_loss, "vp", lambda sde: 1.0),
}
EXACT_ISM = losses.Objective("ism", trace_estimator="exact")
KERNEL_FREE = {"ism": EXACT_ISM, "ssm": losses.Objective("ssm")}   # 2-D: "auto" ISM is exact


@pytest.mark.parametrize("case", sorted(IDENTITY_CASES))
def test_kernel_free_losses_are_the_dsm_loss_minus_a_constant(case):
  """Multi-level ISM / SSM = multi-level DSM - const, paired (the same key draws the same
  t and x_t; only the probes differ): at the exact score (each side's value there, the
  mixture's Fisher information integrated: the exact-value test above), and at a score
  0.3 x + 0.1 + 0.2 sin x away from it (the identity holds for every s). const = D times
  the mean weight, closed form; "weighted" min-SNR: the gap
  D w / p is per example, its mean checked against D min(1, 5 / SNR) / |d lambda/dt| / T
  by Gauss-Legendre quadrature over t."""
  loss_fn, sde_name, constant = IDENTITY_CASES[case]
  sde = SDES[sde_name]
  if constant is None:
    nodes, quad_weights = np.polynomial.legendre.leggauss(64)
    log_lo, log_hi = np.log(1e-5), np.log(sde.T)
    t = jnp.asarray(np.exp(log_lo + (nodes + 1) / 2 * (log_hi - log_lo)))
    w = np.asarray(jnp.minimum(1.0, 5.0 * jnp.exp(-2.0 * sde.log_snr(t))), np.float64)
    constant = lambda sde: DIM * np.sum(quad_weights * (log_hi - log_lo) / 2 * np.asarray(t)
                                        * w) / (sde.T - 1e-5)
  x0 = GMM.sample(jax.random.PRNGKey(20), 20_000)

  @jax.jit
  def gaps(theta):        # [objectives, B]: DSM - each kernel-free objective, per example
    terms = lambda objective: loss_fn(_perturbed_score_fn(sde, theta), sde, x0,
                                      jax.random.PRNGKey(21), objective=objective,
                                      per_example=True)
    dsm = terms(losses.DSM)
    return jnp.stack([dsm - terms(objective) for objective in KERNEL_FREE.values()])

  for theta in (jnp.zeros(3), jnp.array([0.3, 0.1, 0.2])):
    for name, gap in zip(KERNEL_FREE, np.asarray(gaps(theta), np.float64)):
      stats.assert_mean_close(gap, constant(sde), what=f"{case} {name} theta={np.asarray(theta)}")



ESTIMATORS = {"ism_hutchinson": losses.Objective("ism", trace_estimator="hutchinson"),
              "ssm": losses.Objective("ssm"),
              "ssm_3_projections": losses.Objective("ssm", n_projections=3),
              "dsm": losses.DSM, "dsm_cv": losses.Objective("dsm_cv")}


@pytest.mark.parametrize("sde_name", ["vp", "ve"])
def test_kernel_free_gradients_are_unbiased_for_the_exact_trace_objective(sde_name):
  """d loss / d theta of the multi-level loss (uniform t, 64 points) at the score
  s* + 0.3 x + 0.1 tanh(x A) + 0.2 sin x (A mixes the coordinates, so that a Rademacher
  probe is not exact on the theta_1 term: its Jacobian is not diagonal): each estimator's
  minus the
  exact-trace ISM's, paired on the same key (the same t and z; only the probes differ, and
  for DSM the kernel's target), has mean zero within 4 SE over 4000 keys. DSM is here
  because DSM - ISM is a constant: the same expected gradient."""
  sde, mix = SDES[sde_name], jnp.array([[0.6, -1.1], [0.9, 0.4]])
  x0 = GMM.sample(jax.random.PRNGKey(32), 64)
  score_fn = lambda th: lambda x, t: (GMM.score_fn(sde)(x, t) + th[0] * x
                                      + th[1] * jnp.tanh(x @ mix) + th[2] * jnp.sin(x))

  def grad(objective, key):                                         # [3]
    return jax.grad(lambda th: losses.sde_loss(score_fn(th), sde, x0, key, objective=objective))(
        jnp.array([0.3, 0.1, 0.2]))

  paired = jax.jit(jax.vmap(lambda k: jnp.stack(
      [grad(objective, k) - grad(EXACT_ISM, k) for objective in ESTIMATORS.values()])))
  differences = np.asarray(paired(jax.random.split(jax.random.PRNGKey(33), 4000)), np.float64)
  for i, name in enumerate(ESTIMATORS):
    for j in range(3):
      stats.assert_mean_close(differences[:, i, j], 0.0, what=f"{name}, d / d theta_{j}")
    assert np.std(differences[:, i, 1]) > 0   # a random estimate, not the exact trace again


@pytest.mark.parametrize("sde_name", ["vp", "ve"])
def test_the_multi_level_control_variate_cuts_dsms_gradient_noise_where_sigma_is_small(
    sde_name):
  """Per-example gradients (4096 examples) of the level term at one small and one large t,
  at the score of the unbiasedness test above: "dsm_cv" has DSM's mean gradient (paired,
  within 4 SE) and, at small sigma, a small fraction of its variance (measured at t = 0.01:
  0.016 for VP, 0.0009 for VE; with the variate's sign flipped, 4.0 for both, and the test
  fails); at t = 1 the variate is no help (measured: 1.00 for both)."""
  sde, mix = SDES[sde_name], jnp.array([[0.6, -1.1], [0.9, 0.4]])
  x0 = GMM.sample(jax.random.PRNGKey(34), 4096)
  z = jax.random.normal(jax.random.PRNGKey(35), x0.shape)
  score_fn = lambda th: lambda x, t: (GMM.score_fn(sde)(x, t) + th[0] * x
                                      + th[1] * jnp.tanh(x @ mix) + th[2] * jnp.sin(x))

  def per_example_grads(objective, t):                              # [B, 3]
    def term(th, x, zz):
      return objective(score_fn(th), sde, x[None], jnp.full((1,), t), zz[None], None)[0]
    return jax.vmap(jax.grad(term), (None, 0, 0))(jnp.array([0.3, 0.1, 0.2]), x0, z)

  ratios = {}
  for t in (0.01, 1.0):
    dsm = np.asarray(per_example_grads(losses.DSM, t), np.float64)
    cv = np.asarray(per_example_grads(losses.Objective("dsm_cv"), t), np.float64)
    for j in range(3):
      stats.assert_mean_close(cv[:, j] - dsm[:, j], 0.0, what=f"t={t}, d / d theta_{j}")
    ratios[t] = np.var(cv, axis=0).sum() / np.var(dsm, axis=0).sum()
  assert ratios[0.01] < 0.1 and ratios[1.0] > 0.5, ratios


@pytest.mark.parametrize("parameterization", sorted(parameterizations.PARAMETERIZATIONS))
def test_kernel_free_objectives_through_every_parameterization(parameterization):
  """A network at initialization, read through each parameterization: the forward-mode
  JVPs of ISM / SSM go through it, and DSM - ISM = DSM - SSM = D holds (paired, as above)."""
  sde = SDES["vp"]
  model = mlp.MLP(mlp.MLPConfig(hidden=32, depth=2))
  params = model.init(jax.random.PRNGKey(40), jnp.zeros((1, 2)), jnp.zeros((1,)))
  score_fn = parameterizations.get_score_fn(model.apply, params, sde, parameterization,
                                            sigma_data=1.0)
  x0 = GMM.sample(jax.random.PRNGKey(41), 8192)

  @jax.jit
  def gaps():
    terms = lambda objective: losses.sde_loss(score_fn, sde, x0, jax.random.PRNGKey(42),
                                              objective=objective, per_example=True)
    return jnp.stack([terms(losses.DSM) - terms(objective) for objective in KERNEL_FREE.values()])

  for name, gap in zip(KERNEL_FREE, np.asarray(gaps(), np.float64)):
    stats.assert_mean_close(gap, DIM, what=f"{parameterization} {name}")


def test_gradient_accumulation_equals_the_full_batch_step():
  """accumulation_steps k = 2 and 4 take the full batch's optimizer steps up to the order
  of float sums: each example keeps its noise (its key is its index in the step's batch),
  and the k microbatch gradients are averaged. SGD (lr 0.02) so the parameters move by the
  gradient itself (Adam's first steps hardly depend on its scale); three steps, so later
  steps see earlier ones; (images, labels) batches with label dropout, as build.py trains
  class-conditional networks."""
  net = mlp.MLP(mlp.MLPConfig(hidden=16, depth=1, embed_dim=8, num_label_classes=3))
  sde = sde_lib.VPSDE(beta_min=0.1, beta_max=20.0, N=1000)

  def loss_fn(params, batch, key):
    x0, labels = batch
    labels = jnp.where(jax.random.bernoulli(jax.random.fold_in(key, 2), 0.3, labels.shape),
                       3, labels)
    score_fn = parameterizations.get_score_fn(
        lambda p, x, c: net.apply(p, x, c, labels=labels), params, sde)
    return losses.sde_loss(score_fn, sde, x0, key)

  x = jax.random.normal(jax.random.PRNGKey(0), (3, 16, 2))               # 3 steps of 16
  labels = jax.random.randint(jax.random.PRNGKey(1), (3, 16), 0, 3)
  params = net.init(jax.random.PRNGKey(2), x[0], jnp.ones(16), labels=labels[0])
  optimizer = optax.sgd(0.02)
  results = {}
  for k in (1, 2, 4):
    state = losses.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                              opt_state=optimizer.init(params), ema_params=params)
    step = jax.jit(losses.get_train_step(loss_fn, optimizer, lambda s: 0.5,
                                         accumulation_steps=k),
                   compiler_options={"xla_backend_optimization_level": 0})   # compiles 2x faster
    results[k] = step(state, (x, labels), jax.random.PRNGKey(3))
  full, full_metrics = results[1]
  moved = jax.tree_util.tree_map(lambda a, b: float(jnp.max(jnp.abs(a - b))), full.params,
                                 params)
  assert min(jax.tree_util.tree_leaves(moved)) > 1e-4      # every leaf took real steps
  for k in (2, 4):
    state, metrics = results[k]
    np.testing.assert_allclose(metrics["loss"], full_metrics["loss"], rtol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(full)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

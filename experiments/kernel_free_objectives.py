r"""Issue 32: DSM vs SSM vs ISM at every noise level, where each objective is noisy.

The toy 2-D mixture (datasets.gaussian_mixture), the VP SDE, the toy residual MLP through
the noise parameterization, trained 2000 steps with the continuous DSM loss. At that
network and at each of a grid of times t, the per-example gradient of the per-level term
sigma(t)^2 x (objective at x_t) (losses.Objective; "dsm_cv" for the control variate): its
variance over examples (the trace of the covariance, summed over parameters) and the
squared norm of its mean, which the five rows share in expectation (DSM - ISM is a
constant). Rows: DSM; DSM with the control variate -2 sigma z . s(alpha x0) (issue 30);
SSM (variance-reduced, 1 Gaussian projection); ISM with one Rademacher Hutchinson probe;
ISM with the exact trace.

Prediction for the control variate: expanding s(alpha x0 + sigma z) to first order, DSM
with the variate is sigma^2 ||s||^2 + 2 sigma^2 z^T (ds/dx) z + ||z||^2 + O(sigma^3):
SSM-VR with the Gaussian probe z, plus the constant-in-theta ||z||^2. So its gradient
variance should match SSM's at small sigma and part from it where sigma is large. In
training it has DSM's expected gradient at one more network call per step, less noise
than DSM at small t and more at large t: whether it gains at equal time is measured, not
predicted.

Then the cost of a training step of each objective (the jitted Experiment train step), and
training at equal wall-clock: the toy VP run (configs/default_toy.py, batch 512, EMA 0.99)
trained with each objective of losses.OBJECTIVES (dsm_cv too) for the steps that DSM's 3000
steps cost, at the median step costs measured in the same invocation (the objectives
alternating, 7 rounds of 50 steps), three seeds each; the held-out NLL minus the mixture's
(an estimate of KL(p || model) >= 0) with its paired SE per seed, and the mean over seeds
with the SE from their spread.

  python -m experiments.kernel_free_objectives [--quick]     # ~10 min on 2 CPU cores
"""
import tempfile
import time

from absl import app
import jax
from jax import flatten_util
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import datasets
import losses
import sde_lib
from configs import default_toy
from experiments import common
from models import mlp
from models import parameterizations
from run import build
from run import evaluate
from run import train

FLAGS = common.FLAGS
GMM = datasets.gaussian_mixture()
SDE = sde_lib.VPSDE(N=1000)


def _objective_term(objective: losses.Objective):
  def term(s, x0, t, key):
    k_z, k_probe = jax.random.split(key)
    return objective(s, SDE, x0, t, jax.random.normal(k_z, x0.shape), k_probe)
  return term


# name -> term(score_fn, x0 [B, 2], t [B], key) -> [B]: sigma(t)^2 x the objective at t.
TERMS = {"DSM": _objective_term(losses.DSM),
         "DSM + control variate": _objective_term(losses.Objective("dsm_cv")),
         "SSM-VR (1 Gaussian)": _objective_term(losses.Objective("ssm")),
         "ISM (Hutchinson)": _objective_term(losses.Objective("ism", trace_estimator="hutchinson")),
         "ISM (exact trace)": _objective_term(losses.Objective("ism", trace_estimator="exact"))}


def gradient_noise(model, params, times, n, key):
  """{t: {name: (trace of the per-example gradient covariance, ||mean gradient||^2)}}."""
  x0 = GMM.sample(jax.random.fold_in(key, 0), n)
  keys = jax.random.split(jax.random.fold_in(key, 1), n)
  out = {t: {} for t in times}
  for name, term in TERMS.items():
    def example_grad(x, k, t, term=term):
      loss = lambda p: term(parameterizations.get_score_fn(model.apply, p, SDE, "noise"),
                            x[None], t[None], k)[0]
      return flatten_util.ravel_pytree(jax.grad(loss)(params))[0]
    grads_at = jax.jit(jax.vmap(example_grad, in_axes=(0, 0, None)))
    for t in times:
      grads = np.asarray(grads_at(x0, keys, jnp.asarray(t, jnp.float32)), np.float64)
      out[t][name] = (float(grads.var(0, ddof=1).sum()), float(np.sum(grads.mean(0) ** 2)))
  return out


def trained_network(steps, key):
  model = mlp.MLP(mlp.MLPConfig(hidden=128, depth=3))
  params = model.init(key, jnp.zeros((1, 2)), jnp.zeros((1,)))

  def loss(p, k):
    k_data, k_loss = jax.random.split(k)
    score_fn = parameterizations.get_score_fn(model.apply, p, SDE, "noise")
    return losses.sde_loss(score_fn, SDE, GMM.sample(k_data, 512), k_loss)

  return model, common.fit(loss, params, steps, jax.random.fold_in(key, 1), lr=2e-3)[0]


def step_costs(objectives, repeats: int, rounds: int) -> dict:
  """{objective: [seconds per optimizer step] x rounds} of the toy Experiment's jitted train
  step (batch 512), the objectives timed in alternating rounds of `repeats` steps, so that
  a machine whose load drifts slows each alike."""
  steps = {}
  for objective in objectives:
    config = default_toy.get_default_configs()
    config.training.objective = objective
    config.training.n_jitted_steps = 1
    exp = build.build(config)
    state = exp.init_state(jax.random.PRNGKey(0))
    batch = GMM.sample(jax.random.PRNGKey(1), 512)[None]
    state, _ = exp.train_step(state, batch, jax.random.PRNGKey(2), None)     # compile
    steps[objective] = [exp.train_step, state, batch]
  costs = {objective: [] for objective in objectives}
  for _ in range(rounds):
    for objective, (train_step, state, batch) in steps.items():
      start = time.perf_counter()
      for _ in range(repeats):
        state, metrics = train_step(state, batch, jax.random.PRNGKey(2), None)   # donates state
      jax.block_until_ready(metrics)
      costs[objective].append((time.perf_counter() - start) / repeats)
      steps[objective][1] = state
  return costs


def equal_time_training(costs: dict, dsm_steps: int, seeds) -> dict:
  """{objective: [(nll_gap, its paired SE) per seed]} of the toy VP run trained with each
  objective for dsm_steps x cost(dsm) / cost(objective) steps, rounded to the config's
  n_jitted_steps (equal wall-clock at the measured step costs)."""
  gaps, jit = {}, default_toy.get_default_configs().training.n_jitted_steps
  for objective, cost in costs.items():
    steps = jit * max(1, round(dsm_steps * costs["dsm"] / cost / jit))
    for seed in seeds:
      config = default_toy.get_default_configs()
      config.seed, config.training.objective = seed, objective
      config.training.n_iters, config.model.ema_rate = steps, 0.99
      config.training.log_freq = config.training.snapshot_freq = steps
      config.training.snapshot_freq_for_preemption = steps
      config.eval.enable_sampling = False
      exp = build.build(config)
      with tempfile.TemporaryDirectory() as workdir:
        state, _ = train.train(exp, workdir)
      metrics, _ = evaluate.evaluate_params(exp, state.ema_params, steps)
      gaps.setdefault(objective, []).append((steps, metrics["nll_gap"], metrics["nll_gap_se"]))
  return gaps


def training_table(gaps: dict) -> str:
  rows = []
  for objective, runs in gaps.items():
    values = np.array([gap for _, gap, _ in runs])
    spread = (f"{values.mean():.3f} ± {values.std(ddof=1) / np.sqrt(len(values)):.3f}"
              if len(values) > 1 else f"{values.mean():.3f}")
    rows.append([objective, runs[0][0], *(f"{g:.3f} ± {se:.3f}" for _, g, se in runs), spread])
  seeds = len(next(iter(gaps.values())))
  return common.markdown_table(
      ["objective", "steps (equal time)", *(f"NLL gap, seed {i}" for i in range(seeds)),
       "mean ± SE over seeds"], rows)


def training_reading(gaps: dict) -> str:
  """Which objectives' mean gaps differ by more than twice the SE of the difference."""
  means = {o: np.mean([g for _, g, _ in runs]) for o, runs in gaps.items()}
  ses = {o: (np.std([g for _, g, _ in runs], ddof=1) / np.sqrt(len(runs)) if len(runs) > 1
             else np.nan) for o, runs in gaps.items()}
  best = min(means, key=means.get)
  parts = []
  for other in sorted(set(means) - {best}, key=means.get):
    gap, se = means[other] - means[best], float(np.hypot(ses[best], ses[other]))
    verdict = "resolved" if np.isfinite(se) and gap > 2 * se else "not resolved"
    parts.append(f"{other} {gap:+.3f}" + (f" ± {se:.3f}" if np.isfinite(se) else "")
                 + f" ({verdict})")
  return (f"At equal wall-clock, {best} reaches the lowest mean NLL gap; the others, above "
          "it by (± SE over seeds, resolved beyond twice it): " + ", ".join(parts) + ".")


NOTES = """What the numbers do not show. One network (after the DSM steps above), one seed
and one draw of {n} examples per t: the variances are estimates, and another network or
data set can rank them differently where they are close. The equal-time training compares
one budget (the toy run's 3000 DSM steps) on one data set; the step costs are of this
machine, and the ranking can change with the budget (DSM converges in fewer examples, the
kernel-free objectives gain with more). Not run here: the tiny Fashion-MNIST network with
bits/dim and FID / KID. Measured earlier, one seed each, in the slow test's setting (tests/test_training.py `_train_toy_vp`: toy VP run, 3000
steps, EMA 0.99, held-out NLL minus the mixture's, +- its paired SE): DSM at batch 512:
0.015 +- 0.003; exact-trace ISM at batch 512: 0.044 +- 0.006; SSM at batch 512: 0.078
(0.052 +- 0.007 after 6000 steps; 0.054 +- 0.007 with 4 projections; 0.074 +- 0.008 with
EMA 0.999); SSM at batch 2048: 0.027 +- 0.005, the setting of the slow test. More
projections did not help, a larger batch did: the noise that costs is the x_t noise at
large t, which every kernel-free estimator shares, not the probe noise."""


def reading(noise, times) -> str:
  """Sentences computed from the table: where each objective is the noisy one."""
  small, large = times[0], times[-1]
  var = lambda t, name: noise[t][name][0]
  return (
      f"Reading. At t = {small:.3g}, DSM's per-example gradient variance is "
      f"{var(small, 'DSM') / var(small, 'ISM (exact trace)'):.3g} times exact-trace ISM's and "
      f"{var(small, 'DSM') / var(small, 'SSM-VR (1 Gaussian)'):.3g} times SSM's; at t = "
      f"{large:.3g} SSM's is {var(large, 'SSM-VR (1 Gaussian)') / var(large, 'DSM'):.3g} times "
      f"DSM's and exact ISM's {var(large, 'ISM (exact trace)') / var(large, 'DSM'):.3g} "
      "times: DSM's target z is almost x_t itself at large t, so its residual, and its noise, "
      "vanish there, while the kernel-free terms keep the spread of x_t ~ p_t. The control "
      "variate's variance over SSM's: "
      f"{var(small, 'DSM + control variate') / var(small, 'SSM-VR (1 Gaussian)'):.3g} at t = "
      f"{small:.3g}, {var(large, 'DSM + control variate') / var(large, 'SSM-VR (1 Gaussian)'):.3g}"
      f" at t = {large:.3g} (predicted: 1 at small sigma, apart at large sigma); over plain "
      f"DSM's: {var(small, 'DSM + control variate') / var(small, 'DSM'):.3g} at t = {small:.3g}, "
      f"{var(large, 'DSM + control variate') / var(large, 'DSM'):.3g} at t = {large:.3g}: the "
      "variate is worth it only where sigma is small.")


def main(_):
  times = (1e-3, 1e-1, 1.0) if FLAGS.quick else tuple(np.geomspace(1e-3, 1.0, 10))
  steps, n = (50, 256) if FLAGS.quick else (2000, 4096)
  model, params = trained_network(steps, jax.random.PRNGKey(0))
  noise = gradient_noise(model, params, times, n, jax.random.PRNGKey(1))
  names = list(TERMS)
  rows = [[f"{t:.3g}", f"{float(SDE.marginal(jnp.array([t]))[1][0]):.3g}",
           f"{noise[t]['DSM'][1]:.3g}", *(f"{noise[t][name][0]:.3g}" for name in names)]
          for t in times]
  table = common.markdown_table(["t", "sigma(t)", "||E grad||^2 (DSM)",
                                 *(f"Var: {name}" for name in names)], rows)
  rounds = step_costs(losses.OBJECTIVES, 10 if FLAGS.quick else 50, 2 if FLAGS.quick else 7)
  costs = {name: float(np.median(c)) for name, c in rounds.items()}
  gaps = equal_time_training(costs, 20 if FLAGS.quick else 3000,
                             (0,) if FLAGS.quick else (0, 1, 2))
  cost_table = common.markdown_table(
      ["objective", "ms / step (batch 512), median", "range over rounds", "ratio to dsm"],
      [[name, f"{1e3 * costs[name]:.2f}", f"{1e3 * min(c):.2f}-{1e3 * max(c):.2f}",
        f"{costs[name] / costs['dsm']:.2f}"] for name, c in rounds.items()])
  figure, ax = plt.subplots(figsize=(6, 4))
  for name in names:
    ax.loglog(times, [noise[t][name][0] for t in times], marker="o", label=name)
  ax.loglog(times, [noise[t]["DSM"][1] for t in times], "k--", label="||E grad||^2 (DSM)")
  ax.set_xlabel("t (VP)")
  ax.set_ylabel("per-example gradient variance (trace)")
  ax.legend(fontsize=7)
  setup = (f"VP SDE, toy 2-D mixture, MLP (noise parameterization) after {steps} DSM steps; "
           f"{n} examples per t; one probe / noise draw per example.")
  common.write_outputs("kernel_free_objectives", "DSM vs SSM vs ISM at every noise level",
                       setup, "\n\n".join([table, cost_table, reading(noise, times),
                                             training_table(gaps), training_reading(gaps),
                                             NOTES.format(n=n)]), figure)


if __name__ == "__main__":
  app.run(main)

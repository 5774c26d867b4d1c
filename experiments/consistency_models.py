r"""Issue 33: consistency distillation checked against the exact consistency map.

Data N(0, 0.5^2) in one dimension, the VP SDE, boundary eps = 1e-3. A residual MLP
(hidden 64, depth 2) through models.parameterizations.get_consistency_fn (sigma_data 0.5)
is distilled (consistency.distillation_loss) from one Heun step of the exact score on the
EDM grid of N = 40 steps, target parameters an EMA of rate 0.95, Adam at 1e-3, batch 256.

On Gaussian data the probability-flow ODE from t to eps is x -> r(t) x with
r = std_eps / std_t (consistency.gaussian_ode_map): the error of the learned map is
measured exactly against it, as the relative RMS error
  sqrt(E_i E_{x ~ p_{t_i}} (f(x, t_i) - r(t_i) x)^2) / sqrt(E_i E (r(t_i) x)^2)
over the grid times t_i (4096 draws each), against training steps, beside the same error of
the map distillation converges to on this grid, the composed Heun steps
(consistency.teacher_chain_map): its gap to r is the teacher's discretization error, below
which distillation cannot go. Then the one-step sampler's output law
(sampling.get_consistency_sampler, 1, 2 and 4 steps): its variance against the data's and
the KL of the Gaussian with the output's mean and variance to N(0, 0.5^2) (exact when the
learned map is linear, as the true one is). A row with a wrong boundary
(c_skip(sigma_min) = 0.9 instead of 1) shows what the boundary condition carries, and a
row trained without a teacher (consistency.training_loss, with the paper's N(k) and mu(k)
schedules over the 4000 steps) shows what the exact teacher is worth.
Seeds: three training seeds, mean +- SE.

Then the toy 2-D mixture (datasets.gaussian_mixture) with its exact score as the teacher,
an MLP 128x3 student (sigma_data 1) distilled 32000 steps in the same setting: the exact
NLL under p (minus p's entropy) and the component-weight error of the 1- and 2-step
students' samples, beside the teacher ODE's (the 40 Heun steps the student distils, from
prior draws) and exact draws'.

  python -m experiments.consistency_models [--quick]     # ~6 min on 2 CPU cores
"""
import dataclasses
import functools
import math

from absl import app
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import consistency
import datasets
import densities
import sampling
import sde_lib
from experiments import common
from models import mlp
from models import parameterizations

FLAGS = common.FLAGS
TRAINED = "consistency training, no teacher, distillation's grid and EMA"
SCHEDULED = "consistency training, no teacher, the paper's N(k) and mu(k)"
SDE = sde_lib.VPSDE()
STD, EPS, GRID_STEPS = 0.5, 1e-3, 40
DATA = densities.GaussianMixture(jnp.zeros((1, 1)), jnp.array([STD]), jnp.ones(1))


@dataclasses.dataclass(frozen=True)
class Problem:
  """Data with an exact score, and the student network."""
  data: densities.GaussianMixture
  model: mlp.MLP
  sigma_data: float


PROBLEMS = {"gaussian": Problem(DATA, mlp.MLP(mlp.MLPConfig(hidden=64, depth=2)), STD),
            "mixture": Problem(datasets.gaussian_mixture(),
                               mlp.MLP(mlp.MLPConfig(hidden=128, depth=3)), 1.0)}


def wrong_boundary(sigma_hat, sigma_hat_min, sigma_data):
  """consistency_coefficients with c_skip scaled by 0.9: c_skip(sigma_min) = 0.9."""
  c_skip, c_out, c_in = parameterizations.consistency_coefficients(sigma_hat, sigma_hat_min,
                                                                   sigma_data)
  return 0.9 * c_skip, c_out, c_in


def consistency_fn(params, coefficients=parameterizations.consistency_coefficients,
                   problem="gaussian"):
  p = PROBLEMS[problem]
  return parameterizations.get_consistency_fn(p.model.apply, params, SDE, EPS, p.sigma_data,
                                              coefficients=coefficients)


def times():
  return sampling.time_grid(SDE, GRID_STEPS, "edm", EPS)


@functools.lru_cache(maxsize=None)
def _trainer(coefficients, chunk: int, batch: int, lr: float, ema_rate: float, problem: str,
             teacher: bool = True, schedule_steps: int = 0):
  """(init(key) -> state, run(state, key, k) -> state after `chunk` steps from step k),
  jitted once per setting; state = (online params, target params, Adam state).
  Distillation from the exact score (teacher) or consistency training without one, on the
  grid of GRID_STEPS steps with target EMA `ema_rate`, or with schedule_steps = K > 0 with
  consistency.training_schedule's N(k) and mu(k) over K steps."""
  grid = times()
  optimizer = optax.adam(lr)
  data = PROBLEMS[problem].data
  score = data.score_fn(SDE)

  def init(key):
    params = PROBLEMS[problem].model.init(key, jnp.zeros((1, data.dim)), jnp.zeros((1,)))
    return params, params, optimizer.init(params)

  def loss_fn(p, target, k, num_steps):
    k_data, k_loss = jax.random.split(k)
    f, f_target = (consistency_fn(q, coefficients, problem) for q in (p, target))
    x0 = data.sample(k_data, batch)
    if teacher:
      return consistency.distillation_loss(f, f_target, SDE, score, x0, k_loss, grid)
    return consistency.training_loss(f, f_target, SDE, x0, k_loss, num_steps, eps=EPS)

  @jax.jit
  def run(state, key, start):
    def step(state, inputs):
      (p, target, opt_state), (k, step_index) = state, inputs
      points, rate = (consistency.training_schedule(step_index, schedule_steps)
                      if schedule_steps else (grid.shape[0], ema_rate))
      grads = jax.grad(loss_fn)(p, target, k, points - 1)
      updates, opt_state = optimizer.update(grads, opt_state)
      p = optax.apply_updates(p, updates)
      target = jax.tree_util.tree_map(lambda a, b: rate * a + (1 - rate) * b, target, p)
      return (p, target, opt_state), None
    inputs = (jax.random.split(key, chunk), start + jnp.arange(chunk))
    return jax.lax.scan(step, state, inputs)[0]

  return jax.jit(init), run


def distill(key, checkpoints, coefficients=parameterizations.consistency_coefficients,
            batch=256, lr=1e-3, ema_rate=0.95, problem="gaussian", teacher=True,
            schedules=False):
  """[the online parameters after each of `checkpoints` (increasing) training steps]:
  distilled from the exact score, or with teacher=False trained without one; with
  `schedules`, N(k) and mu(k) of consistency training over checkpoints[-1] steps instead
  of the fixed grid and ema_rate."""
  chunk = math.gcd(*(c for c in checkpoints if c)) if any(checkpoints) else 1
  init, run = _trainer(coefficients, chunk, batch, lr, ema_rate, problem, teacher,
                       checkpoints[-1] if schedules else 0)
  state, done, out = init(jax.random.fold_in(key, 0)), 0, []
  for n in checkpoints:
    while done < n:
      state = run(state, jax.random.fold_in(key, done + 1), done)
      done += chunk
    out.append(state[0])
  return out


@functools.partial(jax.jit, static_argnums=(1, 3))
def _map_errors(params, coefficients, key, n):
  f = consistency_fn(params, coefficients)
  grid = times()
  ode = consistency.gaussian_ode_map(SDE, STD, grid, EPS)
  chain = consistency.teacher_chain_map(SDE, STD, grid)
  x0 = DATA.sample(key, n)

  def at(i):
    t = jnp.full((n,), grid[i])
    x = SDE.perturb(x0, t, jax.random.normal(jax.random.fold_in(key, i), x0.shape))
    fx = f(x, t)
    return (jnp.mean((fx - ode[i] * x) ** 2), jnp.mean((fx - chain[i] * x) ** 2),
            jnp.mean((ode[i] * x) ** 2))

  err_ode, err_chain, scale = jax.lax.map(at, jnp.arange(grid.shape[0]))
  return jnp.sqrt(err_ode.mean() / scale.mean()), jnp.sqrt(err_chain.mean() / scale.mean())


def map_errors(params, key, coefficients=parameterizations.consistency_coefficients,
               n=4096) -> tuple[float, float]:
  """(relative RMS error of the consistency function of `params` against the exact ODE
  map r, against the teacher chain's map), over the grid times and n draws of p_t at
  each."""
  return tuple(float(e) for e in _map_errors(params, coefficients, key, n))


def chain_error() -> float:
  """The teacher chain's relative RMS error against r, in map_errors' measure: with
  x ~ p_{t_i}, (r_i x)^2 has the same mean std_eps^2 at every t_i, so the measure is
  sqrt(mean_i (chain_i / r_i - 1)^2)."""
  grid = times()
  ode = consistency.gaussian_ode_map(SDE, STD, grid, EPS)
  chain = consistency.teacher_chain_map(SDE, STD, grid)
  return float(jnp.sqrt(jnp.mean((chain / ode - 1.0) ** 2)))


@functools.partial(jax.jit, static_argnums=(1, 2, 4))
def _draw(params, coefficients, steps, key, n):
  sampler = sampling.get_consistency_sampler(SDE, (n, 1), num_steps=steps, eps=EPS)
  return sampler(key, consistency.as_score_fn(consistency_fn(params, coefficients), SDE, EPS))[0]


def output_law(params, coefficients, steps: int, key, n=100_000) -> tuple[float, float]:
  """(variance of the `steps`-step consistency sampler's output, KL of the Gaussian with its
  mean and variance to the data N(0, STD^2))."""
  x = _draw(params, coefficients, steps, key, n)
  m, v = float(jnp.mean(x)), float(jnp.var(x))
  return v, 0.5 * (v / STD**2 + m**2 / STD**2 - 1.0 - np.log(v / STD**2))


def _mixture_measures(x, entropy: float) -> tuple[float, float]:
  """(exact NLL of x [n, 2] under the mixture minus its entropy, total variation between
  the fractions of x assigned to each component (most likely under p) and p's weights)."""
  gmm = PROBLEMS["mixture"].data
  assigned = np.argmax(np.asarray(gmm.log_responsibilities_t(SDE, x, jnp.zeros(len(x)))), 1)
  fractions = np.bincount(assigned, minlength=gmm.weights.shape[0]) / len(x)
  return (float(-jnp.mean(gmm.log_prob(x))) - entropy,
          float(0.5 * np.abs(fractions - np.asarray(gmm.weights)).sum()))


def mixture_students(params, seeds: int, n: int) -> dict:
  """{sampler: [(NLL gap, weight TV) per sampling seed]} of exact draws, the teacher ODE
  (Heun with the exact score on the distillation grid, from the same prior draws) and the
  1- and 2-step students of `params` (problem "mixture")."""
  gmm = PROBLEMS["mixture"].data
  entropy = float(-jnp.mean(gmm.log_prob(gmm.sample(jax.random.PRNGKey(99), 200_000))))
  student = consistency.as_score_fn(consistency_fn(params, problem="mixture"), SDE, EPS)
  samplers = {
      "exact draws": lambda k: gmm.sample(k, n),
      f"teacher ODE (Heun, {GRID_STEPS} steps)": lambda k: sampling.get_edm_sampler(
          SDE, (n, 2), GRID_STEPS, eps=EPS, denoise=False)(k, gmm.score_fn(SDE))[0],
      **{f"student, {m} step{'s' * (m > 1)}": functools.partial(
          lambda k, m: sampling.get_consistency_sampler(SDE, (n, 2), m, eps=EPS)(k, student)[0],
          m=m) for m in (1, 2)}}
  return {name: [_mixture_measures(jax.jit(draw)(jax.random.PRNGKey(s)), entropy)
                 for s in range(seeds)] for name, draw in samplers.items()}


def _pm(values, fmt=".4f") -> str:
  values = np.asarray(values)
  se = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
  return f"{values.mean():{fmt}} +- {se:{fmt}}"


RUNS = {"c_skip(sigma_min) = 1": parameterizations.consistency_coefficients,
        "c_skip(sigma_min) = 0.9 (wrong)": wrong_boundary,
        TRAINED: parameterizations.consistency_coefficients,
        SCHEDULED: parameterizations.consistency_coefficients}


def _gaussian_students(checkpoints, seeds: int) -> tuple[dict, dict]:
  """({run: [per checkpoint: [per seed: (error vs exact map, vs teacher chain)]]},
  {run: [per seed: final parameters]}) of every run of RUNS."""
  errors, finals = {}, {}
  for name, coefficients in RUNS.items():
    per_seed = [distill(jax.random.PRNGKey(s), checkpoints, coefficients,
                        teacher=name not in (TRAINED, SCHEDULED), schedules=name == SCHEDULED)
                for s in range(seeds)]
    errors[name] = [[map_errors(p[c], jax.random.PRNGKey(77), coefficients)
                     for p in per_seed] for c in range(len(checkpoints))]
    finals[name] = [p[-1] for p in per_seed]
  return errors, finals


def _output_laws(finals, sampler_steps, draws) -> tuple[str, tuple]:
  """(the table of each student's output law per number of sampler steps, the first
  row's (mean, SE) of the output variance: the right boundary at one step)."""
  rows, one_step = [], None
  for name in RUNS:
    for steps in sampler_steps:
      laws = [output_law(p, RUNS[name], steps, jax.random.PRNGKey(5), draws)
              for p in finals[name]]
      if one_step is None:
        variances = np.array([v for v, _ in laws])
        one_step = (variances.mean(), variances.std(ddof=1) / np.sqrt(len(variances)))
      rows.append([name, steps, _pm([v for v, _ in laws]), _pm([k for _, k in laws], ".2e")])
  return common.markdown_table(
      ["student", "sampler steps", f"output variance (data: {STD**2:g})",
       "KL(Gaussian fit || data)"], rows), one_step


def gaussian_reading(errors, checkpoints, teacher_gap: float, one_step) -> str:
  """The Gaussian study's reading, computed from its errors and output variances."""
  mean_error = lambda name, c: np.mean([e[0] for e in errors[name][c]])
  good, bad, trained, scheduled = RUNS
  final = lambda name: np.array([e[0] for e in errors[name][-1]])

  def versus_distillation(name):
    gap = final(name).mean() - final(good).mean()
    se = np.hypot(*(final(n).std(ddof=1) / np.sqrt(len(final(n))) for n in (good, name)))
    return (f"{final(name).mean():.4f}, " + (
        f"above distillation's by {gap:.4f} +- {se:.4f} (resolved beyond twice the SE)"
        if gap > 2 * se else f"{gap:+.4f} +- {se:.4f} from distillation's (not resolved)"))
  lowest_bad = min(range(len(checkpoints)), key=lambda c: mean_error(bad, c))
  chain_variance = float(consistency.teacher_chain_map(SDE, STD, times())[0] ** 2
                         * SDE.prior_std**2)
  exact_variance = float(SDE.marginal(jnp.array([EPS]))[0][0] ** 2 * STD**2
                         + SDE.marginal(jnp.array([EPS]))[1][0] ** 2)
  return (
      f"Reading. With the boundary c_skip(sigma_min) = 1 the learned map's error against the "
      f"exact ODE map falls from {mean_error(good, 0):.4f} at initialization (f = c_skip x) "
      f"to {mean_error(good, -1):.4f} after {checkpoints[-1]} steps; the teacher chain the "
      f"distillation targets is itself {teacher_gap:.4f} from the exact map (Heun's "
      f"discretization on {GRID_STEPS} steps), the floor of this comparison. With "
      f"c_skip(sigma_min) = 0.9 the error is lowest at {checkpoints[lowest_bad]} steps "
      f"({mean_error(bad, lowest_bad):.4f}) and ends at {mean_error(bad, -1):.4f}, against the "
      "0.1 by which the boundary itself is off: the boundary is the only anchor of the "
      "self-consistency loss. The one-step sampler's output variance with the right boundary "
      f"is {one_step[0]:.4f} +- {one_step[1]:.4f}, against p_eps's {exact_variance:.4f} and "
      f"the {chain_variance:.4f} the teacher chain predicts for a perfect student (the chain's "
      "factor at T squared times the prior's variance): "
      + ("within twice the SE of the chain's, so the remaining bias of one-step sampling here "
         "is the teacher's" if abs(one_step[0] - chain_variance) < 2 * one_step[1] else
         "more than twice the SE from the chain's, so the student adds a bias of its own")
      + f". Trained without a teacher (the pair x0, z standing in for the score; its "
      f"expected gradient is that of distillation with the exact score and a DDIM step), on "
      f"distillation's grid and EMA the error after {checkpoints[-1]} steps is "
      f"{versus_distillation(trained)}; with the paper's schedules (N(k) from 2 to 151 grid "
      f"points, EMA mu(k) from 0.9 to {float(consistency.training_schedule(1.0, 1)[1]):.4f}) "
      f"it is {versus_distillation(scheduled)}.")


def _figure(errors, checkpoints, teacher_gap: float):
  figure, ax = plt.subplots(figsize=(5.5, 3.8))
  for name in RUNS:
    mean = [np.mean([e[0] for e in errors[name][c]]) for c in range(len(checkpoints))]
    ax.plot(checkpoints, mean, marker="o", label=name)
  ax.axhline(teacher_gap, color="k", linestyle="--", label="teacher chain vs exact")
  ax.set_yscale("log")
  ax.set_xlabel("training steps")
  ax.set_ylabel("rel. RMS error vs exact ODE map")
  ax.legend(fontsize=7)
  return figure


def main(_):
  checkpoints = (0, 50) if FLAGS.quick else (0, 250, 500, 1000, 2000, 4000)
  sampler_steps, draws = ((1, 2), 10_000) if FLAGS.quick else ((1, 2, 4), 100_000)
  seeds = 2 if FLAGS.quick else 3
  errors, finals = _gaussian_students(checkpoints, seeds)
  rows = [[name, n, _pm([e[0] for e in errors[name][c]]), _pm([e[1] for e in errors[name][c]])]
          for name in RUNS for c, n in enumerate(checkpoints)]
  table = common.markdown_table(["student", "training steps", "rel. RMS error vs exact ODE map",
                                 "vs teacher chain (N = 40 Heun)"], rows)
  teacher_gap = chain_error()
  law_table, one_step = _output_laws(finals, sampler_steps, draws)
  reading = gaussian_reading(errors, checkpoints, teacher_gap, one_step)
  setup = (f"VP SDE, data N(0, {STD:g}^2), eps {EPS:g}; MLP 64x2 through the consistency "
           f"parameterization; distilled from one Heun step of the exact score on the EDM grid "
           f"of {GRID_STEPS} steps, EMA target 0.95, Adam 1e-3, batch 256; {seeds} seeds, mean +- "
           "SE; errors over the grid times, 4096 draws of p_t at each.")
  mixture_table, mixture_reading = mixture_section(seeds, FLAGS.quick)
  notes = ("What the numbers do not show. One SDE (VP), one teacher (Heun on 40 EDM steps) "
           "and one student size per data set; consistency training on the Gaussian only, at one "
           "budget, with the paper's CIFAR-10 schedule constants (s0 2, s1 150, mu0 0.9) "
           "untuned here (they were set for 800k steps); the no-teacher rows' expected gradient is "
           "distillation's with a DDIM (first-order) step, not the Heun step distilled here, so "
           "their gap to distillation mixes the one-sample estimate's noise with the step's "
           "order; the Fashion-MNIST distillation through main.py is on its own page "
           "(fashion_mnist_consistency.md). The KL column fits a Gaussian to the output, exact "
           "only as far as the learned map is linear.")
  common.write_outputs("consistency_models", "Consistency distillation against the exact ODE map",
                       setup, "\n\n".join([table, law_table, reading, mixture_table,
                                             mixture_reading, notes]), _figure(errors, checkpoints,
                                                                               teacher_gap))


def mixture_section(seeds: int, quick: bool) -> tuple[str, str]:
  """The students of the toy 2-D mixture against the teacher ODE: (table, reading)."""
  steps, sampling_seeds, n = (50, 2, 500) if quick else (32_000, 4, 4000)
  students = [distill(jax.random.PRNGKey(s), (steps,), problem="mixture")[0]
              for s in range(seeds)]
  per_student = [mixture_students(p, sampling_seeds, n) for p in students]
  rows, means = [], {}
  for name in per_student[0]:
    if name.startswith("student"):      # SE over training seeds (each averaged over draws)
      values = np.array([np.mean(r[name], axis=0) for r in per_student])
    else:                               # the same for every student: SE over draws
      values = np.array(per_student[0][name])
    means[name] = [(values[:, j].mean(), values[:, j].std(ddof=1) / np.sqrt(len(values)))
                   for j in range(2)]
    rows.append([name, _pm(values[:, 0], ".3f"), _pm(values[:, 1], ".4f")])
  table = common.markdown_table(["sampler", "NLL under p - H(p) (nats)", "weight TV"], rows)
  setting = (f"The toy 2-D mixture (datasets.gaussian_mixture), MLP 128x3 (sigma_data 1), "
             f"{steps} distillation steps in the same setting, {seeds} training seeds x "
             f"{sampling_seeds} sampling seeds x {n} samples (students: SE over training seeds; "
             "the others: over draws). ")
  return table, setting + mixture_reading(means)


def mixture_reading(means) -> str:
  """Verdicts from {sampler: [(NLL gap mean, SE), (weight TV mean, SE)]}: a student keeps
  the weights unless its TV exceeds exact draws' by more than twice the SE, and sits lower
  under p than the teacher if its NLL gap exceeds the teacher's by more than twice the SE."""
  teacher = next(k for k in means if k.startswith("teacher"))
  exact, one, two = means["exact draws"], means["student, 1 step"], means["student, 2 steps"]
  apart = lambda a, b: abs(a[0] - b[0]) > 2 * math.hypot(a[1], b[1])
  above = lambda a, b: apart(a, b) and a[0] > b[0]
  kept = [m for m, student in ((1, one), (2, two)) if not above(student[1], exact[1])]
  worse = [m for m, student in ((1, one), (2, two)) if above(student[0], means[teacher][0])]
  return (
      f"Weight TV: {one[1][0]:.4f} at 1 step, {two[1][0]:.4f} at 2, against the "
      f"teacher's {means[teacher][1][0]:.4f} and exact draws' {exact[1][0]:.4f}: "
      + (f"not above exact draws' by more than twice the SE at {' and '.join(map(str, kept))} "
         "step(s): the weights kept" if kept else
         "more than twice the SE above exact draws' at both")
      + f". NLL gap: {one[0][0]:.3f} at 1 step and {two[0][0]:.3f} at 2, against the "
      f"teacher's {means[teacher][0][0]:.3f} with {2 * GRID_STEPS - 1} evaluations: "
      + (f"the student sits lower under p than its teacher at {' and '.join(map(str, worse))} "
         "step(s), by more than twice the SE" if worse else
         "the students match their teacher within twice the SE")
      + ".")


if __name__ == "__main__":
  app.run(main)

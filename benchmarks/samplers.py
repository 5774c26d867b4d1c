r"""Sampler loop overhead and on-device vs host-side likelihood solves, in one run.

1. Overhead: wall time of each sampler / (NFE x wall time of one score evaluation),
   for a time-conditioned MLP score network on a batch of 2-D points. One score
   evaluation is timed inside a `fori_loop` of chained evaluations (no per-call
   dispatch), so a ratio near 1 means the sampler loop itself costs nothing.
2. Likelihood: `likelihood.get_likelihood_fn` (diffrax Dopri5 on the device) against
   the host-side approach of score_sde (scipy `solve_ivp(method="RK45")` calling a
   jitted drift-and-divergence function once per stage, with a device round-trip
   each time), same score function, same probes, same tolerances.

  python -m benchmarks.samplers [--batch 1024] [--hidden 256] [--repeats 3]

It runs with main.py's XLA:CPU kernels (infra/xla_cpu.py); an XLA_FLAGS choice of
--xla_cpu_experimental_ynn_fusion_type overrides them.
"""
import time

from infra import xla_cpu

xla_cpu.choose_cpu_kernels()   # as main.py does, before JAX starts its backend

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
from scipy import integrate  # pylint: disable=g-import-not-at-top,wrong-import-position

import divergence  # pylint: disable=g-import-not-at-top,wrong-import-position
import likelihood  # pylint: disable=g-import-not-at-top,wrong-import-position
import sampling  # pylint: disable=g-import-not-at-top,wrong-import-position
import sde_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from models import mlp  # pylint: disable=g-import-not-at-top,wrong-import-position
from models import parameterizations  # pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks import timing  # pylint: disable=g-import-not-at-top,wrong-import-position

flags.DEFINE_integer("batch", 1024, "Points per batch.")
flags.DEFINE_integer("hidden", 256, "MLP width.")
flags.DEFINE_integer("repeats", 3, "Timed repetitions (the median is reported).")
FLAGS = flags.FLAGS


def timed(fn, *args):
  """Median wall time of fn(*args) over FLAGS.repeats runs after one warm-up run."""
  return float(np.median(timing.wall_seconds(fn, *args, repeats=FLAGS.repeats)))


def mlp_score_fn(sde):
  model = mlp.MLP(mlp.MLPConfig(hidden=FLAGS.hidden, depth=3))
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)), jnp.zeros((1,)))
  # Random non-zero output layer so that the dynamics are not trivial.
  params = jax.tree_util.tree_map(
      lambda p: p + 0.01 * jax.random.normal(jax.random.PRNGKey(1), p.shape), params)
  return parameterizations.get_score_fn(model.apply, params, sde, "noise")


def score_eval_time(score_fn, x, n_evals=200):
  @jax.jit
  def chained(x):
    t = jnp.full((x.shape[0],), 0.5)
    return jax.lax.fori_loop(0, n_evals, lambda _, y: y + 1e-3 * score_fn(y, t), x)
  return timed(chained, x) / n_evals


def overhead_table(sde, score_fn, x):
  per_eval = score_eval_time(score_fn, x)
  shape = x.shape
  samplers = {
      "PC reverse diffusion + Langevin": sampling.get_pc_sampler(sde, shape),
      "PC ancestral": sampling.get_pc_sampler(sde, shape, "ancestral_sampling", "none"),
      "PC Euler-Maruyama": sampling.get_pc_sampler(sde, shape, "euler_maruyama", "none"),
      "probability-flow ODE (Dopri5)": sampling.get_ode_sampler(sde, shape),
      "EDM Heun, 18 steps": sampling.get_edm_sampler(sde, shape, num_steps=18),
      "DPM-Solver++(2M), 20 steps": sampling.get_dpm_solver_sampler(sde, shape, num_steps=20),
      "DDIM, 50 steps": sampling.get_ddim_sampler(sde, shape, num_steps=50),
  }
  print(f"\nSampler overhead (batch {shape[0]}, MLP width {FLAGS.hidden}; "
        f"one score evaluation: {1e3 * per_eval:.3f} ms)")
  print("| sampler | NFE | wall s | wall / (NFE x eval) |\n|---|---|---|---|")
  for name, sampler in samplers.items():
    run = jax.jit(lambda key, s=sampler: s(key, score_fn))
    _, nfe = run(jax.random.PRNGKey(0))
    wall = timed(run, jax.random.PRNGKey(0))
    print(f"| {name} | {int(nfe)} | {wall:.3f} | {wall / (int(nfe) * per_eval):.2f} |")


def scipy_rk45_loglik(sde, score_fn, x, probe, rtol, atol, eps):
  """score_sde's approach: scipy RK45 on the host, one jitted call per stage."""
  shape = x.shape

  @jax.jit
  def drift_and_div(t, x):
    drift_fn = lambda y: sde.reverse(score_fn, True).sde(y, jnp.full((y.shape[0],), t))[0]
    drift, jvp = jax.jvp(drift_fn, (x,), (probe,))
    return drift, jnp.sum(jvp * probe, axis=-1)

  def ode_func(t, y):
    drift, div = drift_and_div(t, jnp.asarray(y[:-shape[0]].reshape(shape), jnp.float32))
    return np.concatenate([np.asarray(drift).ravel(), np.asarray(div)])

  y0 = np.concatenate([np.asarray(x).ravel(), np.zeros(shape[0])])
  solution = integrate.solve_ivp(ode_func, (eps, sde.T), y0, rtol=rtol, atol=atol, method="RK45")
  z = solution.y[:-shape[0], -1].reshape(shape)
  logp = np.asarray(sde.prior_logp(jnp.asarray(z))) + solution.y[-shape[0]:, -1]
  return logp, solution.nfev


def likelihood_table(sde, score_fn, x):
  tol, eps = 1e-5, 1e-5
  key = jax.random.PRNGKey(3)
  probe = divergence.sample_probe(key, x.shape, "rademacher")
  ours = jax.jit(lambda x: likelihood.get_likelihood_fn(sde, "rademacher", tol, tol, eps)(key, score_fn, x))
  logp_ours, _, nfe_ours = ours(x)
  wall_ours = timed(ours, x)
  logp_scipy, nfe_scipy = scipy_rk45_loglik(sde, score_fn, x, probe, tol, tol, eps)  # warm-up
  start = time.perf_counter()
  scipy_rk45_loglik(sde, score_fn, x, probe, tol, tol, eps)
  wall_scipy = time.perf_counter() - start
  print(f"\nLikelihood (batch {x.shape[0]}, Rademacher probe, rtol = atol = {tol})")
  print("| solver | NFE | wall s | ratio to diffrax | max abs logp difference |\n|---|---|---|---|---|")
  print(f"| diffrax Dopri5 on the device | {int(nfe_ours)} | {wall_ours:.3f} | 1.00 | - |")
  print(f"| scipy RK45 on the host (score_sde) | {nfe_scipy} | {wall_scipy:.3f} | "
        f"{wall_scipy / wall_ours:.2f} | {np.max(np.abs(logp_scipy - np.asarray(logp_ours))):.2e} |")


def main(_):
  print(f"devices: {jax.devices()}")
  sde = sde_lib.VPSDE(N=500)
  score_fn = mlp_score_fn(sde)
  x = jax.random.normal(jax.random.PRNGKey(2), (FLAGS.batch, 2))
  overhead_table(sde, score_fn, x)
  likelihood_table(sde, score_fn, x)


if __name__ == "__main__":
  app.run(main)

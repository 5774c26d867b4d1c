r"""Why a Fashion-MNIST model's samples are (or are not) garments: per checkpoint and for
raw vs EMA parameters, the held-out denoising error by noise level and the samples of
several samplers, each scored against the real data.

  python -m experiments.fashion_mnist_diagnosis --workdir runs/fmnist_cpu \
      --config configs/fashion_mnist/vp_ddpm_cpu.py --steps 1200,2400

Sample scores (64 samples, fixed seed; data.py `ImageData.sample_metrics`): `in
range` is the fraction of samples whose pixels all lie in [-1.5, 1.5] (data in [-1, 1]);
`near data` the fraction whose distance to the nearest of 2000 test images is at most the
99th percentile of that distance for the test images themselves (leave one out): a
garment-like sample is as close to real garments as a real one is; noise and saturated
blobs are far.
"""
from absl import app
from absl import flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np

from experiments import common
import sampling
from infra import figures
from run import build as run_build
from infra import workdir as run_workdir

config_flags.DEFINE_config_file("config", "configs/fashion_mnist/vp_ddpm_cpu.py", "Run config.")
flags.DEFINE_string("workdir", None, "The trained run's workdir.")
flags.DEFINE_list("steps", [], "Checkpoint steps to diagnose (default: the latest).")
flags.DEFINE_integer("num_samples", 64, "Samples per sampler.")
FLAGS = flags.FLAGS

NOISE_TIMES = (0.1, 0.3, 0.5, 0.7, 0.9)
SAMPLERS = {   # name -> (method, settings)
    "DDIM 100": ("ddim", dict(num_steps=100, eta=0.0)),
    "DDIM 100, eta 1": ("ddim", dict(num_steps=100, eta=1.0)),
    "DPM-Solver++ 50": ("dpm_solver_2m", dict(num_steps=50)),
    "PC Euler-Maruyama 1000": ("pc", dict(predictor="euler_maruyama", corrector="none",
                                          num_steps=1000)),
}


def denoising_errors(exp, params, images, key):
  """Per noise time t: (eps MSE, x0 MSE) of the network on held-out images."""
  sde, rows = exp.sde, []
  for t in NOISE_TIMES:
    z = jax.random.normal(jax.random.fold_in(key, int(1000 * t)), images.shape)
    tt = jnp.full((images.shape[0],), t)
    alpha, sigma = sde.marginal(tt)
    xt = sde.perturb(images, tt, z)
    x0 = sampling.tweedie_denoise(sde, exp.score_fn(params), xt, tt)
    eps_hat = (xt - alpha[:, None, None, None] * x0) / sigma[:, None, None, None]
    rows.append((float(jnp.mean((eps_hat - z) ** 2)), float(jnp.mean((x0 - images) ** 2))))
  return rows


def main(argv):
  del argv
  config = FLAGS.config
  exp = run_build.build(config)
  held_out = jnp.asarray(exp.data.held_out[:256])
  steps = [int(s) for s in FLAGS.steps] or [None]
  error_rows, sample_rows, grids = [], [], []
  for step in steps:
    state, step = run_workdir.load_state(exp, FLAGS.workdir, step)
    for which, params in (("raw", state.params), ("EMA", state.ema_params)):
      errors = denoising_errors(exp, params, held_out, jax.random.PRNGKey(1))
      error_rows.append([step, which] + [f"{e:.4f} / {x:.3g}" for e, x in errors])
      for name, (method, settings) in SAMPLERS.items():
        sampler = exp.make_sampler(method, (FLAGS.num_samples, 28, 28, 1), **settings)
        x, _ = jax.jit(lambda k, p: sampler(k, exp.score_fn(p)))(jax.random.PRNGKey(7), params)
        x = np.asarray(x)
        scores = exp.data.sample_metrics(x)
        sample_rows.append([step, which, name, f"{x.min():.3g} .. {x.max():.3g}",
                            f"{x.reshape(len(x), -1).std(axis=1).mean():.3g}",
                            f"{scores['in_range_fraction']:.2f}",
                            f"{scores['near_data_fraction']:.2f}"])
        grids.append((f"step {step}, {which}, {name}", x))
  error_table = common.markdown_table(
      ["step", "params"] + [f"t = {t}: eps MSE / x0 MSE" for t in NOISE_TIMES], error_rows)
  sample_table = common.markdown_table(
      ["step", "params", "sampler", "range", "per-sample std", "in range", "near data"],
      sample_rows)
  figure = common.plt.figure(figsize=(3.0 * len(SAMPLERS), 3.3 * len(grids) / len(SAMPLERS)))
  for i, (title, x) in enumerate(grids):
    ax = figure.add_subplot(len(grids) // len(SAMPLERS), len(SAMPLERS), i + 1)
    ax.imshow(figures.image_grid((np.clip(x, -1, 1) + 1) / 2)[..., 0], cmap="gray",
              vmin=0, vmax=1)
    ax.set_title(title, fontsize=7)
    ax.axis("off")
  setup = (f"Run: {FLAGS.workdir} ({config.model.name}, nf {config.model.nf}); denoising "
           "errors on 256 test images, one noise draw each; samples from one seed.")
  common.write_outputs("fashion_mnist_diagnosis", "Fashion-MNIST: denoising error and samples",
                       setup, error_table + "\n\n" + sample_table, figure)


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  app.run(main)

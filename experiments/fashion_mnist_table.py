r"""Song et al. (2021) Tables 2-3 in miniature: the CPU Fashion-MNIST network trained under
the VP, VE and sub-VP SDEs, EDM's process (with its loss) and rectified flow (flow
matching), same budget, each scored by bits/dim (probability-flow ODE) and, per sampler,
by FID / KID / precision / recall / IS of the Fashion-MNIST feature network on the
project's FID protocol (evaluation.PROTOCOLS; the default: uint8 samples against the
training split), with the NFE; the table's caption states the protocol and set sizes.

Train the runs first (about 20 min each on 2 quiet cores), then:

  python -m experiments.fashion_mnist_table \
      --runs vp=runs/fmnist_cpu,ve=runs/fmnist_ve_cpu,subvp=runs/fmnist_subvp_cpu,\
edm=runs/fmnist_edm_cpu,rf=runs/fmnist_rf_cpu

Everything is resumable: samples and likelihood batches are kept under
<workdir>/table/step_<step>_<settings>/. Writes docs/results/fashion_mnist_table.{md,png}.
"""
import json
import os

from absl import app
from absl import flags
import jax
import matplotlib
import numpy as np

from infra import figures
from run import build
from run import evaluate
from run import workdir as run_workdir
from configs.fashion_mnist import edm_ddpm_cpu
from configs.fashion_mnist import rf_ddpm_cpu
from configs.fashion_mnist import subvp_ddpm_cpu
from configs.fashion_mnist import ve_ddpm_cpu
from configs.fashion_mnist import vp_ddpm_cpu

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

flags.DEFINE_list("runs", [], "name=workdir pairs; names: vp, ve, subvp, edm, rf.")
flags.DEFINE_integer("num_samples", 1000, "Samples per sampler.")
flags.DEFINE_integer("bpd_images", 1000, "Test images for bits/dim (one dequantization each).")
flags.DEFINE_integer("pc_steps", 250, "Predictor steps of the PC sampler (one corrector each).")
flags.DEFINE_string("outdir", "docs/results", "Where the table and figure go.")
FLAGS = flags.FLAGS

CONFIGS = {"vp": vp_ddpm_cpu, "ve": ve_ddpm_cpu, "subvp": subvp_ddpm_cpu, "edm": edm_ddpm_cpu,
           "rf": rf_ddpm_cpu}
SAMPLERS = ("pc", "ode", "ddim", "dpm_solver_2m", "edm_heun")
LABELS = {"pc": "PC (reverse diffusion + Langevin, {pc} steps)", "ode": "ODE (Dopri5, rtol 1e-3)",
          "ddim": "DDIM eta 1, 100 steps", "dpm_solver_2m": "DPM-Solver++(2M), 20 steps",
          "edm_heun": "EDM Heun, 18 steps"}


def table_config(name: str):
  config = CONFIGS[name].get_config()
  e, s = config.eval, config.sampling
  e.samplers = SAMPLERS
  e.enable_loss = False
  e.likelihood_points = FLAGS.bpd_images
  e.batch_size = 128
  s.num_samples, s.batch_size = FLAGS.num_samples, min(200, FLAGS.num_samples)
  s.pc.predictor, s.pc.corrector, s.pc.num_steps = "reverse_diffusion", "langevin", FLAGS.pc_steps
  s.ode.rtol = s.ode.atol = 1e-3
  s.dpm_solver_2m.num_steps, s.edm_heun.num_steps = 20, 18
  s.ode.denoise = True
  return config


def evaluate_run(name: str, workdir: str) -> dict:
  exp = build.build(table_config(name))
  state, step = run_workdir.load_state(exp, workdir)
  out_dir = os.path.join(workdir, "table", f"step_{step}_n{FLAGS.num_samples}_"
                         f"bpd{FLAGS.bpd_images}_pc{FLAGS.pc_steps}")
  metrics, _ = evaluate.evaluate_params(exp, state.ema_params, step, out_dir)
  with open(os.path.join(out_dir, "metrics.json"), "w") as f:
    json.dump(metrics, f, indent=2)
  grids = {}
  for sampler in SAMPLERS:
    x, _ = evaluate.generate(exp, state.ema_params, jax.random.PRNGKey(exp.seed + 30_000), 16,
                             os.path.join(out_dir, "samples", sampler), sampler)
    grids[sampler] = figures.image_grid(np.asarray(exp.data.unscale(x[:16])))
  return metrics, grids


def main(_):
  runs = dict(pair.split("=", 1) for pair in FLAGS.runs)
  results = {name: evaluate_run(name, workdir) for name, workdir in runs.items()}
  lines = ["| process | bits/dim (ODE) | sampler | NFE | FID | KID | precision | recall | IS |",
           "|---|---|---|---|---|---|---|---|---|"]
  for name, (m, _) in results.items():
    for i, sampler in enumerate(SAMPLERS):
      bpd = f"{m['bits_per_dim']:.3f} ± {m['bits_per_dim_se']:.3f}" if i == 0 else ""
      label = LABELS[sampler].format(pc=FLAGS.pc_steps)
      lines.append(f"| {name if i == 0 else ''} | {bpd} | {label} "
                   f"| {m[sampler + '/nfe']} | {m[sampler + '/fid']:.2f} "
                   f"| {m[sampler + '/kid']:.2f} ± {m[sampler + '/kid_std']:.2f} "
                   f"| {m[sampler + '/precision']:.3f} | {m[sampler + '/recall']:.3f} "
                   f"| {m[sampler + '/is']:.2f} ± {m[sampler + '/is_std']:.2f} |")
  protocols = sorted({m[f"{sampler}/fid_protocol"] for m, _ in results.values()
                      for sampler in SAMPLERS})
  table = "FID protocol: " + "; ".join(protocols) + ".\n\n" + "\n".join(lines)
  print(table)
  os.makedirs(FLAGS.outdir, exist_ok=True)
  with open(os.path.join(FLAGS.outdir, "fashion_mnist_table.md"), "w") as f:
    f.write(table + "\n")
  fig, axes = plt.subplots(len(results), len(SAMPLERS), figsize=(2.2 * len(SAMPLERS),
                                                                  2.4 * len(results)),
                           squeeze=False)
  for row, (name, (m, grids)) in enumerate(results.items()):
    for col, sampler in enumerate(SAMPLERS):
      ax = axes[row, col]
      ax.imshow(grids[sampler][..., 0], cmap="gray", vmin=0, vmax=1)
      ax.set_xticks([])
      ax.set_yticks([])
      ax.set_title(f"{name}, {sampler}\nFID {m[sampler + '/fid']:.1f}", fontsize=8)
  fig.savefig(os.path.join(FLAGS.outdir, "fashion_mnist_table.png"), dpi=120,
              bbox_inches="tight")


if __name__ == "__main__":
  app.run(main)

r"""Runs every experiment and writes the results page.

  python -m experiments.run_all [--quick] [--outdir docs/results]

Writes <outdir>/<name>.md and .png for each experiment, and <outdir>/../results.md
(docs/results.md by default): the seed report's questions in order, then the
reproduced results. About two hours on 2 CPU cores at full size (q3 ~30 min,
processes_gmm ~20 min, q7 ~17 min, q6 ~8-14 min, likelihood_weighting ~8 min), plus
fashion_mnist_table's 9 training runs and their scoring (~13 h; it needs
`make feature-net` first, checked before anything runs).
"""
import importlib
import os
import time

from absl import app
from absl import flags

from experiments import common

flags.DEFINE_list("only", None, "Run just these experiments (the page is still assembled "
                  "from every <outdir>/<name>.md present; --only= only assembles it).")
FLAGS = common.FLAGS
EXPERIMENTS = ("q1_score_vs_density", "q2_sigma_generalization", "q3_objectives", "q3_dsm_noise",
               "q4_score_accuracy", "q5_tweedie", "q6_dae_vs_diffusion_energy",
               "q7_non_gaussian_dsm", "q8_constant_c", "r1_annealed_langevin",
               "r2_vincent_dae_dsm", "r3_hyvarinen_consistency", "table1_samplers",
               "inpainting_bias", "processes_gmm", "pc_corrector_failure", "sampler_bias",
               "likelihood_weighting", "kernel_free_objectives", "autoguidance",
               "consistency_models", "fashion_mnist_table")
INTRO = """# Results: the seed report's eight questions, answered by experiment

Each section below is written by one script in `experiments/` (its docstring states the
setup); regenerate all of them with `python -m experiments.run_all` (about two hours on
2 CPU cores, and the Fashion-MNIST table's runs about 13 h more; `--quick` runs
everything at a tiny size in a few minutes). Seeds are
fixed; where theory gives a number, the table puts it beside the measurement with the
Monte-Carlo standard error. The questions are those of `shared/SEED.md`.
"""


def main(_):
  names = EXPERIMENTS if FLAGS.only is None else FLAGS.only
  for name in names:
    if name not in EXPERIMENTS:
      raise app.UsageError(f"unknown experiment {name!r}; valid choices: {list(EXPERIMENTS)}")
    getattr(importlib.import_module(f"experiments.{name}"), "check_ready", lambda: None)()
  for name in names:
    start = time.time()
    importlib.import_module(f"experiments.{name}").main(None)
    print(f"{name}: {time.time() - start:.0f} s")
  sections = []
  prefix = os.path.basename(os.path.normpath(FLAGS.outdir))
  for name in EXPERIMENTS:
    path = os.path.join(FLAGS.outdir, f"{name}.md")
    if os.path.exists(path):
      with open(path) as f:
        sections.append(f.read().replace(f"]({name}.png)", f"]({prefix}/{name}.png)"))
  page = os.path.join(os.path.dirname(os.path.normpath(FLAGS.outdir)) or ".", "results.md")
  with open(page, "w") as f:
    f.write(INTRO + "\n" + "\n".join(sections))
  print(f"wrote {page}")


if __name__ == "__main__":
  app.run(main)

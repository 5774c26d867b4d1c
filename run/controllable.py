"""The inpaint and colorize modes: a checkpoint's EMA parameters complete the first
sampling.batch_size held-out images (controllable_generation.py) and write a figure
with three rows of images: original, the known part, the result.

Settings: config.controllable.mask (controllable_generation.make_mask), .method
("replacement" or "repaint"), .resamplings (RePaint's R); the PC sampler of
config.sampling.pc (its predictor, corrector, snr and num_steps), autoguided as
config.sampling.autoguidance says.
"""
import os

from absl import logging
import jax
import numpy as np

import controllable_generation as cg
import run
from infra import figures
from infra import mesh
from infra import weights
from infra import workdir as wd


def _complete(exp, workdir: str, name: str) -> str:
  """Completes the held-out images by controllable_generation.completion_problem(name) on
  a checkpoint; writes <workdir>/<name>/step_<step>/<name>.{npz,png}. Returns that folder."""
  c = exp.controllable
  if len(exp.data.example_shape) != 3:
    raise run.RunError(f"--mode {name} needs image data; this config's data are 2-D points")
  original = exp.data.held_out[:exp.sampling.batch_size]
  try:
    get_sampler, args, known = cg.completion_problem(name, original, c.mask, exp.seed,
                                                     float(exp.data.scale(0.0)))
    sampler = get_sampler(exp.sde, original.shape, method=c.method, resamplings=c.resamplings,
                          **exp.sampler_kwargs["pc"])
  except ValueError as e:
    raise run.RunError(str(e).splitlines()[0]) from None
  with wd.open_for_writing(workdir, exp.record):
    params, step = weights.restore_params(exp, workdir)
    weak = weights.weak_params(exp)
    a = exp.sampling.autoguidance      # the unconditional score, autoguided if weak
    score_fn = cg.sampling_score_fn(exp.score_fn, -1, autoguidance_weight=a and a.weight)
    x, nfe = jax.jit(lambda p, w, k: sampler(k, score_fn(p, weak_params=w), *args))(
        params, weak, jax.random.PRNGKey(exp.seed + 60_000))
    x, nfe = mesh.to_host(x), int(nfe)
    out_dir = os.path.join(workdir, name, f"step_{step}")
    if jax.process_index() == 0:
      wd.save_npz(os.path.join(out_dir, f"{name}.npz"), original=original, known=known,
                  result=x, nfe=nfe)
      figures.image_rows(os.path.join(out_dir, f"{name}.png"),
                         [np.asarray(exp.data.unscale(r)) for r in (original, known, x)],
                         ["original", "known", f"{name} ({c.method}, NFE {nfe})"])
  logging.info("wrote %s/%s.{npz,png} (NFE %d)", out_dir, name, nfe)
  return out_dir


def inpaint(exp, workdir: str) -> str:
  return _complete(exp, workdir, "inpaint")


def colorize(exp, workdir: str) -> str:
  return _complete(exp, workdir, "colorize")

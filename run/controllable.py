"""The inpaint and colorize modes: a checkpoint's EMA parameters complete the first
sampling.batch_size held-out images (controllable_generation.py) and write a figure
with three rows of images: original, the known part, the result.

Settings: config.controllable.mask ("half": the right half unknown; "box": the central
half-size square unknown; "random": each pixel unknown with probability 1/2), .method
("replacement" or "repaint"), .resamplings (RePaint's R); the PC sampler of
config.sampling.pc (its predictor, corrector, snr and num_steps).
"""
import os

from absl import logging
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

import controllable_generation as cg
import run
from run import checkpoints
from run import evaluate

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

MASKS = ("half", "box", "random")


def make_mask(kind: str, shape, seed: int = 0) -> np.ndarray:
  """[H, W, 1] with 1 where the pixel is known, for images of shape [..., H, W, C]."""
  h, w = shape[-3], shape[-2]
  mask = np.ones((h, w, 1), np.float32)
  if kind == "half":
    mask[:, w // 2:] = 0.0
  elif kind == "box":
    mask[h // 4:h // 4 + h // 2, w // 4:w // 4 + w // 2] = 0.0
  elif kind == "random":
    mask = (np.random.default_rng(seed).uniform(size=(h, w, 1)) < 0.5).astype(np.float32)
  else:
    raise run.RunError(f"unknown config.controllable.mask={kind!r}; valid choices: {list(MASKS)}")
  return mask


def _restore_params(exp, workdir):
  checkpoints.check_workdir(workdir)
  mngr = checkpoints.manager(workdir, exp.config.training)
  step = exp.config.eval.checkpoint_step
  state, step = checkpoints.restore(mngr, exp.abstract_state(), None if step < 0 else step)
  return evaluate.evaluation_params(exp, workdir, state), step


def _figure(exp, path, rows, titles):
  """One row of the first 16 images per entry of rows."""
  fig, axes = plt.subplots(len(rows), 1, figsize=(12, 1.6 * len(rows)))
  for ax, images, title in zip(axes, rows, titles):
    strip = np.concatenate(list(np.clip(np.asarray(exp.task.unscale(images[:16])), 0, 1)), 1)
    ax.imshow(strip[..., 0] if strip.shape[-1] == 1 else strip, cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
  fig.savefig(path, dpi=110, bbox_inches="tight")
  plt.close(fig)


def _complete(exp, workdir, name, get_sampler, args, original, known):
  """Runs get_sampler(...)(key, score_fn, *args) on a checkpoint; writes
  <workdir>/<name>/step_<step>/<name>.{npz,png}. Returns that folder."""
  c = exp.config.controllable
  try:
    sampler = get_sampler(exp.sde, original.shape, method=c.method, resamplings=c.resamplings,
                          **exp.config.sampling.pc)
  except ValueError as e:
    raise run.RunError(str(e).splitlines()[0]) from None
  params, step = _restore_params(exp, workdir)
  x, nfe = jax.jit(lambda p, k: sampler(k, exp.score_fn(p), *args))(
      params, jax.random.PRNGKey(exp.config.seed + 60_000))
  x, nfe = evaluate.to_host(x), int(nfe)
  out_dir = os.path.join(workdir, name, f"step_{step}")
  if jax.process_index() == 0:
    os.makedirs(out_dir, exist_ok=True)
    np.savez(os.path.join(out_dir, f"{name}.npz"), original=original, known=known, result=x,
             nfe=nfe)
    _figure(exp, os.path.join(out_dir, f"{name}.png"), [original, known, x],
            ["original", "known", f"{name} ({c.method}, NFE {nfe})"])
  logging.info("wrote %s/%s.{npz,png} (NFE %d)", out_dir, name, nfe)
  return out_dir


def inpaint(exp, workdir: str) -> str:
  images = exp.task.held_out[:exp.config.sampling.batch_size]
  mask = make_mask(exp.config.controllable.mask, images.shape, exp.config.seed)
  masked = np.where(mask > 0, images, float(exp.task.scale(0.0)))
  return _complete(exp, workdir, "inpaint", cg.get_inpainter,
                   (jnp.asarray(images), jnp.asarray(mask)), images, masked)


def colorize(exp, workdir: str) -> str:
  images = exp.task.held_out[:exp.config.sampling.batch_size]
  if images.shape[-1] != 3:
    raise run.RunError(f"colorize needs 3-channel images; config.data.dataset="
                       f"{exp.config.data.dataset!r} has {images.shape[-1]}")
  gray = images.mean(-1, keepdims=True)
  return _complete(exp, workdir, "colorize", cg.get_colorizer, (jnp.asarray(gray),),
                   images, np.repeat(gray, 3, -1))

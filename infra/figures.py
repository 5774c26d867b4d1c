"""Pictures of samples: image grids, 2-D scatter and density panels, rows of image strips.

Images are [N, H, W, C] in [0, 1]; 2-D points [N, 2]; densities are log-densities on a
square grid.
"""
import math

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position


def image_grid(images: np.ndarray) -> np.ndarray:
  """[N, H, W, C] in [0, 1] -> one [rows H, cols W, C] image (cols = ceil(sqrt N)), 1 px
  white borders between tiles."""
  n, h, w, c = images.shape
  cols = math.ceil(math.sqrt(n))
  rows = math.ceil(n / cols)
  grid = np.ones((rows * (h + 1) - 1, cols * (w + 1) - 1, c), np.float32)
  for i, image in enumerate(np.clip(images, 0.0, 1.0)):
    r, col = divmod(i, cols)
    grid[r * (h + 1):r * (h + 1) + h, col * (w + 1):col * (w + 1) + w] = image
  return grid


def save_image(path: str, image: np.ndarray):
  """One [H, W, C] image in [0, 1] as a PNG (gray for C = 1)."""
  gray = image.shape[-1] == 1
  plt.imsave(path, image[..., 0] if gray else image, cmap="gray" if gray else None,
             vmin=0.0, vmax=1.0)


def point_histogram(x: np.ndarray, lim: float) -> np.ndarray:
  """Points [N, 2] as a [128, 128, 1] image in [0, 1]: their histogram on [-lim, lim]^2."""
  counts, _, _ = np.histogram2d(x[:, 1], x[:, 0], bins=128, range=[[-lim, lim], [-lim, lim]])
  return (counts[::-1] / max(counts.max(), 1.0))[..., None]


def point_panels(path: str, panels, lim: float):
  """One panel per (title, values): points [N, 2] (the first 4000 drawn) or a log-density
  on a square grid over [-lim, lim]^2 (shown as the density)."""
  fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2))
  for ax, (title, values) in zip(axes, panels):
    if values.shape[-1] == 2:
      ax.scatter(*values[:4000].T, s=1, alpha=0.4)
      ax.set_xlim(-lim, lim)
      ax.set_ylim(-lim, lim)
    else:
      ax.imshow(np.exp(values), origin="lower", extent=(-lim, lim, -lim, lim))
    ax.set_title(title)
  fig.savefig(path, dpi=110, bbox_inches="tight")
  plt.close(fig)


def image_rows(path: str, rows, titles):
  """One titled strip of the first 16 images per entry of rows ([N, H, W, C] in [0, 1])."""
  fig, axes = plt.subplots(len(rows), 1, figsize=(12, 1.6 * len(rows)))
  for ax, images, title in zip(axes, rows, titles):
    strip = np.concatenate(list(np.clip(images[:16], 0, 1)), 1)
    ax.imshow(strip[..., 0] if strip.shape[-1] == 1 else strip, cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
  fig.savefig(path, dpi=110, bbox_inches="tight")
  plt.close(fig)

"""Scalar metrics (and images) to TensorBoard event files and the console.

The event files are TensorBoard's own format, written with the `tensorboard`
package's writer: the same files as clu.metric_writers' TensorFlow writer, without
importing TensorFlow (4-9 s of every command's start-up on a 2-core CPU): the marker
module `tensorboard.compat.notf` makes tensorboard use its own TensorFlow stub.
"""
import io
import os
import socket
import sys
import time
import types

from absl import logging
import matplotlib
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.proto import summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top


def hms(seconds: float) -> str:
  """seconds as h:mm:ss (an ETA in the training log)."""
  seconds = int(seconds)
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class MetricWriter:
  """write_scalars(step, {name: value}) -> event file in `logdir` (when `to_disk`) + log.

  Events are written and flushed in the caller's thread, so a failed write (a full disk)
  is an OSError naming the file where it happens, not a traceback from a background
  thread. Unbuffered: each event is on disk when the call returns."""

  def __init__(self, logdir: str, to_disk: bool = True):
    self._logdir, self._to_disk, self._records = logdir, to_disk, None

  def _add(self, event) -> None:
    if not self._to_disk:
      return
    if self._records is None:
      name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}"
      self._path = os.path.join(self._logdir, name)
      self._records = RecordWriter(open(self._path, "wb", buffering=0))
      self._add(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))
    try:
      self._records.write(event.SerializeToString())
    except OSError as e:
      raise OSError(e.errno, e.strerror, self._path) from None

  def write_scalars(self, step: int, scalars: dict) -> None:
    logging.info("[%d] %s", step, ", ".join(f"{k}={v:.6g}" for k, v in scalars.items()))
    values = [summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in scalars.items()]
    self._add(event_pb2.Event(wall_time=time.time(), step=int(step),
                              summary=summary_pb2.Summary(value=values)))

  def write_image(self, step: int, tag: str, image) -> None:
    """image: [H, W, C] (C = 1 or 3) in [0, 1], stored as a PNG."""
    if not self._to_disk:
      return
    buffer = io.BytesIO()
    pixels = image[..., 0] if image.shape[-1] == 1 else image
    plt.imsave(buffer, pixels, cmap="gray", vmin=0.0, vmax=1.0, format="png")
    value = summary_pb2.Summary.Value(tag=tag, image=summary_pb2.Summary.Image(
        height=image.shape[0], width=image.shape[1], colorspace=image.shape[-1],
        encoded_image_string=buffer.getvalue()))
    self._add(event_pb2.Event(wall_time=time.time(), step=int(step),
                              summary=summary_pb2.Summary(value=[value])))

  def close(self) -> None:
    if self._records is not None:
      self._records.close()

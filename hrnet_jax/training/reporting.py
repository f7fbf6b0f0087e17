"""What a training run reports: TensorBoard scalars and images, a progress bar, pictures.

Only process 0 writes anything; other processes get writers that log nothing.
"""
from __future__ import annotations

import logging as std_logging
import os
import sys
import time
from typing import Any, Sequence

from absl import logging
import jax
import numpy as np

from hrnet_jax import palettes

TENSORBOARD_DIR = 'tensorboard'
PICTURES_DIR = 'pictures'


class _QuietLibraries(std_logging.Filter):
  """Drops INFO records of Orbax (dozens of lines per checkpoint); keeps warnings."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return record.levelno >= std_logging.WARNING or '/orbax/' not in record.pathname


def quiet_library_logs() -> None:
  absl_logger = logging.get_absl_logger()
  if not any(isinstance(f, _QuietLibraries) for f in absl_logger.filters):
    absl_logger.addFilter(_QuietLibraries())


class _NullWriter:
  """The writer of processes other than 0."""

  def write_scalars(self, step, scalars):
    pass

  def write_images(self, step, images):
    pass

  def write_hparams(self, hparams):
    pass

  def flush(self):
    pass

  def close(self):
    pass


def create_writer(workdir: str):
  """CLU writer to WORKDIR/tensorboard (+ the log) on process 0; a no-op elsewhere."""
  if jax.process_index() != 0:
    return _NullWriter()
  from clu import metric_writers  # pylint: disable=g-import-not-at-top  (imports TF: slow)
  return metric_writers.create_default_writer(os.path.join(workdir, TENSORBOARD_DIR),
                                              asynchronous=True)


def _fmt_seconds(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f'{h}:{m:02d}:{s:02d}' if h else f'{m:02d}:{s:02d}'


class Progress:
  """A progress bar with ETA and images/s.

  On a terminal the bar redraws in place every step; otherwise (logs, CI) one line is
  logged every `every_steps` steps. Throughput excludes the first step (compilation).
  """

  def __init__(self, *, total_steps: int, start_step: int, images_per_step: int,
               every_steps: int = 50, width: int = 30, stream=None):
    self.total = int(total_steps)
    self.images_per_step = int(images_per_step)
    self.every = max(int(every_steps), 1)
    self.width = width
    self.stream = stream or sys.stderr
    self.tty = jax.process_index() == 0 and getattr(self.stream, 'isatty', lambda: False)()
    self._t0: float | None = None
    self._s0 = int(start_step)

  def rate(self, step: int) -> tuple[float, float]:
    """(steps/s, images/s) since the first timed step; (0, 0) before."""
    now = time.time()
    if self._t0 is None or step <= self._s0:
      return 0.0, 0.0
    sps = (step - self._s0) / max(now - self._t0, 1e-9)
    return sps, sps * self.images_per_step

  def line(self, step: int, **extra: float) -> str:
    sps, ips = self.rate(step)
    frac = step / max(self.total, 1)
    filled = int(round(frac * self.width))
    eta = _fmt_seconds((self.total - step) / sps) if sps > 0 else '--:--'
    bits = ' '.join(f'{k} {v:.4g}' for k, v in extra.items())
    return (f'[{"#" * filled}{"." * (self.width - filled)}] {step}/{self.total} '
            f'{100 * frac:5.1f}% | {ips:.1f} img/s | ETA {eta} {bits}').rstrip()

  def update(self, step: int, metrics: dict[str, Any] | None = None) -> None:
    """Called after every step; `metrics['loss']` is shown (fetching it waits for the
    step, so only when the line is actually drawn)."""
    if self._t0 is None:   # after the first (compiling) step
      self._t0, self._s0 = time.time(), int(step)
      return
    if jax.process_index() != 0:
      return
    draw = self.tty or step % self.every == 0 or step == self.total
    if not draw:
      return
    extra = {'loss': float(metrics['loss'])} if metrics and 'loss' in metrics else {}
    if self.tty:
      self.stream.write('\r' + self.line(step, **extra))
      self.stream.flush()
    else:
      logging.info('%s', self.line(step, **extra))

  def close(self) -> None:
    if self.tty:
      self.stream.write('\n')
      self.stream.flush()


def evaluation_picture(pictures: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], *,
                       dataset: str, num_classes: int, ignore_label: int) -> np.ndarray | None:
  """Rows of (input | label | prediction), stacked; None without pictures."""
  if not pictures:
    return None
  palette = palettes.get_palette(dataset, num_classes)
  rows = []
  for image, label, pred in pictures:
    image = np.asarray(image, np.uint8)
    label = np.asarray(label)
    pred = np.asarray(pred)
    if pred.shape != label.shape or image.shape[:2] != label.shape:
      raise ValueError(f'picture parts differ in size: image {image.shape}, label '
                       f'{label.shape}, prediction {pred.shape}.')
    rows.append(palettes.side_by_side(
        image, palettes.colorize(label, palette, ignore_label=ignore_label),
        palettes.colorize(pred, palette, ignore_label=ignore_label)))
  width = max(r.shape[1] for r in rows)
  gap = np.full((4, width, 3), 255, np.uint8)
  padded = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255)
            for r in rows]
  out = [padded[0]]
  for r in padded[1:]:
    out += [gap, r]
  return np.concatenate(out, axis=0)


def write_pictures(writer, workdir: str, step: int, picture: np.ndarray | None) -> str | None:
  """The evaluation picture as TensorBoard image and WORKDIR/pictures/step_N.png."""
  if picture is None or jax.process_index() != 0:
    return None
  from PIL import Image  # pylint: disable=g-import-not-at-top
  path = os.path.join(workdir, PICTURES_DIR, f'step_{step:07d}.png')
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(picture).save(path)
  writer.write_images(step, {'eval/input_label_prediction': picture[None]})
  return path


def scalars_of(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
  """The scalar entries of an evaluation result, prefixed for TensorBoard."""
  out = {}
  for k, v in metrics.items():
    if isinstance(v, (int, float, np.floating, np.integer)) or (
        isinstance(v, np.ndarray) and v.ndim == 0):
      out[f'{prefix}/{k}'] = float(v)
  return out

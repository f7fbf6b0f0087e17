"""What a training run reports, with CLU: metric writers, progress, profiles, pictures.

Process 0 writes TensorBoard files and the log; the other processes log only (CLU's
`create_default_writer(just_logging=True)`; train.py keeps their log to warnings).
"""
from __future__ import annotations

import logging as std_logging
import os
from typing import Any

from absl import logging
import jax
import numpy as np

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


def create_writer(workdir: str):
  """CLU writer: WORKDIR/tensorboard and the log on process 0, the log elsewhere."""
  from clu import metric_writers  # pylint: disable=g-import-not-at-top  (imports TF: slow)
  return metric_writers.create_default_writer(os.path.join(workdir, TENSORBOARD_DIR),
                                              just_logging=jax.process_index() > 0,
                                              asynchronous=True)


def hparams_of(config) -> dict[str, Any]:
  """The config flattened to 'a.b' -> bool/int/float/str, as TensorBoard's hparams take."""
  out = {}

  def walk(prefix, node):
    for key, value in node.items():
      name = f'{prefix}{key}'
      if hasattr(value, 'items'):
        walk(f'{name}.', value)
      elif isinstance(value, (bool, int, float, str)):
        out[name] = value
      else:
        out[name] = str(value)

  walk('', config)
  return out


def progress_hooks(config, workdir: str, writer) -> list[Any]:
  """Per-step hooks: CLU ReportProgress (steps/s, ETA, time in evaluation), and Profile
  (a trace of `config.profile_steps` steps into the workdir) when that is > 0.

  `hooks[0]` is the ReportProgress, whose `timed(name)` blocks split the time up.
  """
  from clu import periodic_actions  # pylint: disable=g-import-not-at-top
  hooks = [periodic_actions.ReportProgress(
      num_train_steps=int(config.num_train_steps), writer=writer,
      every_steps=int(config.log_every_steps), every_secs=None)]
  profile_steps = int(config.get('profile_steps', 0) or 0)
  if profile_steps > 0 and jax.process_index() == 0:
    hooks.append(periodic_actions.Profile(logdir=workdir, num_profile_steps=profile_steps,
                                          first_profile=10, every_secs=None))
  return hooks


def write_pictures(writer, workdir: str, step: int, picture: np.ndarray | None) -> str | None:
  """An evaluation picture as TensorBoard image and WORKDIR/pictures/step_N.png."""
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

"""Every field of a training/evaluation config checked before any work, naming the field.

    config = config_validation.validate(config, mode='train')    # raises ConfigError

Types, choices, ranges and paths: a mistyped `--config.eval.mode=foo` fails at start-up,
not after hours of training at the first evaluation. Optional path fields
(`init_checkpoint`, `data.data_dir`, `data.manual_dir`) accept None, '', 'None' or
'none' for "not set" (a command-line `--config.init_checkpoint=None` arrives as the
string 'None'); `validate` writes None back into them. Fields a config file adds
beyond configs/default.py are left alone.
"""
from __future__ import annotations

import numbers
import os
from typing import Any

import numpy as np

DTYPES = ('float32', 'bfloat16', 'float16')
OPTIONAL_PATHS = ('init_checkpoint', 'data.data_dir', 'data.manual_dir')
_NONE_WORDS = ('', 'none', 'null')


class ConfigError(ValueError):
  """A config field has a wrong type, value or path; the message names the field."""


def _get(config, dotted: str):
  node = config
  for key in dotted.split('.'):
    if key not in node:
      return _MISSING
    node = node[key]
  return node


_MISSING = object()


def _fail(field: str, value: Any, want: str) -> None:
  raise ConfigError(f'config.{field}={value!r}: {want}.')


def _is_int(v) -> bool:
  return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v) -> bool:
  return isinstance(v, numbers.Real) and not isinstance(v, bool)


class _Checker:
  """Checks of one config; fields a config does not have are skipped."""

  def __init__(self, config):
    self.config = config

  def value(self, field):
    return _get(self.config, field)

  def int(self, field, lo=None, hi=None, what=''):
    v = self.value(field)
    if v is _MISSING:
      return
    if not _is_int(v):
      _fail(field, v, 'must be an integer' + what)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
      rng = (f'>= {lo}' if hi is None else f'between {lo} and {hi}') if lo is not None \
          else f'<= {hi}'
      _fail(field, v, f'must be {rng}{what}')

  def number(self, field, lo=None, hi=None, lo_open=False, hi_open=False, what=''):
    v = self.value(field)
    if v is _MISSING:
      return
    if not _is_number(v) or not np.isfinite(v):
      _fail(field, v, 'must be a number' + what)
    bad = ((lo is not None and (v <= lo if lo_open else v < lo)) or
           (hi is not None and (v >= hi if hi_open else v > hi)))
    if bad:
      left = '(' if lo_open else '['
      right = ')' if hi_open else ']'
      _fail(field, v, f'must be in {left}{lo if lo is not None else "-inf"}, '
                      f'{hi if hi is not None else "inf"}{right}{what}')

  def bool(self, field, optional=False):
    v = self.value(field)
    if v is _MISSING or (optional and v is None):
      return
    if not isinstance(v, (bool, np.bool_)):
      _fail(field, v, 'must be True or False')

  def choice(self, field, choices, optional=False):
    v = self.value(field)
    if v is _MISSING or (optional and v is None):
      return
    if v not in choices:
      _fail(field, v, f'use one of {", ".join(repr(c) for c in choices)}'
                      + (' (or None)' if optional else ''))

  def string(self, field):
    v = self.value(field)
    if v is not _MISSING and (not isinstance(v, str) or not v.strip()):
      _fail(field, v, 'must be a non-empty string')

  def pair(self, field, lo=1, optional=False, what=''):
    """(H, W) of two integers >= lo."""
    v = self.value(field)
    if v is _MISSING or (optional and v is None):
      return
    if (not isinstance(v, (tuple, list)) or len(v) != 2
        or not all(_is_int(x) for x in v)):
      _fail(field, v, 'must be two integers (H, W), e.g. (512, 1024)'
                      + (' or None' if optional else ''))
    if min(v) < lo:
      _fail(field, v, f'both sizes must be >= {lo}{what}')

  def numbers(self, field, positive=False, allow_empty=True, length=None, what=''):
    v = self.value(field)
    if v is _MISSING:
      return
    if not isinstance(v, (tuple, list)) or not all(_is_number(x) for x in v):
      _fail(field, v, 'must be a tuple of numbers, e.g. (0.5, 1.0, 1.5)')
    if not v and not allow_empty:
      _fail(field, v, 'must not be empty')
    if positive and any(x <= 0 for x in v):
      _fail(field, v, 'every value must be > 0')
    if length is not None and v and len(v) != length:
      _fail(field, v, f'must be empty or have {length} values{what}')


def normalize_optional_paths(config) -> None:
  """None for optional path fields set to '', 'None' or 'none'; '~' expanded."""
  for field in OPTIONAL_PATHS:
    value = _get(config, field)
    if value is _MISSING or value is None:
      continue
    *parents, leaf = field.split('.')
    node = config
    for key in parents:
      node = node[key]
    if not isinstance(value, str):
      _fail(field, value, 'must be a path (or None)')
    node[leaf] = None if value.strip().lower() in _NONE_WORDS else os.path.expanduser(value)


def _check_paths(config, mode: str) -> None:
  init = _get(config, 'init_checkpoint')
  if mode == 'train' and isinstance(init, str) and not os.path.isdir(init):
    what = 'is a file, not a checkpoint directory' if os.path.exists(init) else \
        'no such directory'
    _fail('init_checkpoint', init,
          f'{what}; convert the ImageNet weights first (python -m hrnet_jax.convert '
          '--src ... --out DIR, see docs/convert.md) or pass '
          '--config.init_checkpoint=None for a random initialisation')
  manual = _get(config, 'data.manual_dir')
  if isinstance(manual, str) and not os.path.isdir(manual):
    _fail('data.manual_dir', manual, 'no such directory (where the downloaded archives '
                                     'are; None = <data_dir>/downloads/manual)')
  data_dir = _get(config, 'data.data_dir')
  if isinstance(data_dir, str) and '://' not in data_dir and os.path.exists(data_dir) \
      and not os.path.isdir(data_dir):
    _fail('data.data_dir', data_dir, 'is a file, not a directory')


def _optimizer_names() -> tuple[str, ...]:
  """The optimizers hrnet_jax.training.optim builds (its OPTIMIZERS, when it lists them)."""
  try:
    from hrnet_jax.training import optim  # pylint: disable=g-import-not-at-top
    names = getattr(optim, 'OPTIMIZERS', None)
  except ImportError:
    names = None
  return tuple(names) if names else ('sgd', 'adam', 'adamw')


def validate(config, *, mode: str = 'train', check_paths: bool = True):
  """Checks every known field of `config` (raises ConfigError); returns it normalised."""
  from hrnet_jax.data import registry  # pylint: disable=g-import-not-at-top
  from hrnet_jax.models import HEADS, VARIANTS  # pylint: disable=g-import-not-at-top
  normalize_optional_paths(config)
  c = _Checker(config)
  # model
  c.choice('model.name', sorted(VARIANTS))
  c.choice('model.head', tuple(HEADS))
  c.int('model.num_classes', lo=1)
  c.choice('model.upsample', ('nearest', 'bilinear'), optional=True)
  c.bool('model.align_corners', optional=True)
  if c.value('model.bn_momentum') is not None:
    c.number('model.bn_momentum', lo=0, hi=1, lo_open=True)
  c.choice('model.dtype', DTYPES)
  c.choice('model.param_dtype', DTYPES)
  c.bool('model.remat')
  # data
  c.choice('data.name', registry.dataset_names())
  c.string('data.train_split')
  c.string('data.eval_split')
  c.pair('data.crop_size', lo=32, what=' (HRNet needs at least 32x32)')
  c.int('data.base_size', lo=1)
  c.int('data.scale_factor', lo=0)
  c.bool('data.multi_scale')
  c.bool('data.flip')
  c.int('data.ignore_label', lo=0, hi=255)
  c.int('data.num_workers', lo=0)
  max_eval = c.value('data.max_eval_examples')
  if max_eval is not _MISSING and (not _is_int(max_eval) or not (max_eval == -1 or max_eval > 0)):
    _fail('data.max_eval_examples', max_eval, 'must be -1 (the whole split) or > 0')
  c.pair('data.eval_pad_size', lo=32, optional=True)
  c.int('data.eval_resize', lo=32)
  # optimisation
  c.int('global_batch_size', lo=1)
  c.int('num_train_steps', lo=1)
  c.int('grad_accum_steps', lo=1)
  c.choice('optimizer.name', _optimizer_names())
  c.number('optimizer.learning_rate', lo=0, lo_open=True)
  c.number('optimizer.momentum', lo=0, hi=1, hi_open=True)
  c.bool('optimizer.nesterov')
  c.number('optimizer.weight_decay', lo=0)
  c.choice('optimizer.schedule', ('poly', 'multistep', 'step'))
  c.number('optimizer.poly_power', lo=0)
  c.int('optimizer.warmup_steps', lo=0)
  boundaries = c.value('optimizer.step_boundaries')
  if boundaries is not _MISSING and (not isinstance(boundaries, (tuple, list)) or
                                     not all(_is_int(b) and b > 0 for b in boundaries)):
    _fail('optimizer.step_boundaries', boundaries, 'must be a tuple of steps > 0')
  c.number('optimizer.step_factor', lo=0, lo_open=True)
  milestones = c.value('optimizer.milestone_epochs')
  if milestones is not _MISSING and (not isinstance(milestones, (tuple, list)) or
                                     not all(_is_int(m) and m >= 0 for m in milestones)):
    _fail('optimizer.milestone_epochs', milestones, 'must be a tuple of epochs >= 0')
  c.int('optimizer.steps_per_epoch', lo=0)
  if c.value('optimizer.schedule') == 'multistep':
    c.int('optimizer.steps_per_epoch', lo=1, what=" with schedule='multistep'")
  c.choice('optimizer.multistep_semantics', ('torch1.0', 'torch1.1'))
  keywords = c.value('optimizer.nonbackbone_keywords')
  if keywords is not _MISSING and (not isinstance(keywords, (tuple, list)) or
                                   not all(isinstance(k, str) and k for k in keywords)):
    _fail('optimizer.nonbackbone_keywords', keywords,
          "must be a tuple of name parts, e.g. ('cls', 'aux', 'ocr')")
  c.number('optimizer.nonbackbone_mult', lo=0, lo_open=True)
  c.number('optimizer.backbone_lr_mult', lo=0)
  c.bool('optimizer.freeze_backbone')
  # loss
  num_classes = c.value('model.num_classes')
  c.numbers('loss.class_weights', length=num_classes if _is_int(num_classes) else None,
            what=' (one per class)')
  c.bool('loss.ohem')
  c.number('loss.ohem_thresh', lo=0, hi=1, lo_open=True)
  c.int('loss.ohem_min_kept', lo=0)
  c.number('loss.aux_weight', lo=0)
  c.number('loss.label_smoothing', lo=0, hi=1, hi_open=True)
  c.int('loss.chunk_images', lo=0)
  # evaluation
  c.int('eval.every_steps', lo=-1, what=' (0 = after the last step, -1 = never)')
  c.int('eval.global_batch_size', lo=1)
  c.choice('eval.mode', ('whole', 'sliding'))
  c.pair('eval.crop_size', lo=32)
  c.number('eval.stride_rate', lo=0, hi=1, lo_open=True)
  c.choice('eval.window_layout', ('border', 'pad'))
  c.pair('eval.resize_input', lo=32, optional=True)
  c.bool('eval.size_buckets')
  c.numbers('eval.scales', positive=True, allow_empty=False)
  c.bool('eval.flip')
  c.int('eval.num_pictures', lo=0)
  # mesh, checkpoints, logging
  c.int('mesh.fsdp', lo=1)
  c.int('checkpoint.every_steps', lo=0, what=' (0 = only at the end)')
  c.int('checkpoint.keep', lo=1)
  c.bool('checkpoint.keep_best')
  c.bool('checkpoint.async_save')
  c.int('log_every_steps', lo=1)
  c.int('seed', lo=0)
  if check_paths:
    _check_paths(config, mode)
  return config


def validate_topology(config, *, device_count: int, process_count: int,
                      mode: str = 'train') -> None:
  """Batch sizes against the devices and processes of this run."""
  if mode == 'train':
    batch, accum = int(config.global_batch_size), int(config.get('grad_accum_steps', 1))
    if batch % process_count:
      _fail('global_batch_size', batch, f'must be divisible by the {process_count} processes')
    if batch % accum or (batch // accum) % device_count:
      _fail('global_batch_size', batch,
            f'divided by grad_accum_steps={accum} must be a multiple of the {device_count} '
            'devices')
  eval_batch = int(config.eval.global_batch_size)
  if eval_batch % process_count:
    _fail('eval.global_batch_size', eval_batch,
          f'must be divisible by the {process_count} processes')
  # Evaluation batches are split over every device like training ones; a training run
  # evaluates unless eval.every_steps < 0, and must not find out after its last step.
  evaluates = mode != 'train' or int(config.eval.every_steps) >= 0
  if evaluates and eval_batch % device_count:
    _fail('eval.global_batch_size', eval_batch,
          f'must be a multiple of the {device_count} devices')
  if config.mesh.fsdp > 1 and device_count % int(config.mesh.fsdp):
    _fail('mesh.fsdp', int(config.mesh.fsdp), f'must divide the {device_count} devices')

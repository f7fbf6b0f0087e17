"""Orbax checkpoints: model directories and training checkpoints (the only Orbax user).

Two layouts, both readable by `load_model`:

* A model directory (written by `save_model`: the converter, export, the end of
  training)::

      DIR/metadata.json      model, head, num_classes, options, source[, dataset]
      DIR/variables/         Orbax pytree {'params', 'batch_stats'}

* A training workdir (written by `TrainCheckpointManager`)::

      WORKDIR/checkpoints/<step>/{state,data_state,config,metadata}   the last K
      WORKDIR/best/<step>/...          the best by mIoU (top-1 for classification)

  `state` holds step, params, batch_stats, opt_state and rng; `data_state` the
  iterator state of every process (JSON); `config` the run's config (JSON);
  `metadata` the same model metadata as a model directory.
"""
from __future__ import annotations

import base64
import json
import logging as std_logging
import os
from typing import Any

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp

METADATA_FILE = 'metadata.json'
VARIABLES_DIR = 'variables'
CHECKPOINTS_DIR = 'checkpoints'
BEST_DIR = 'best'
REQUIRED_METADATA = ('model', 'head', 'num_classes', 'options', 'source')


class CheckpointError(Exception):
  """A checkpoint directory is missing, empty or unreadable."""


class _NoStepMetadataWarning(std_logging.Filter):
  """Reading one item (`state/`) of a step directory on its own is how load_model reads
  training checkpoints; Orbax warns that the step-level metadata is not in the item."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return not str(record.msg).startswith('Metadata file does not exist')


logging.get_absl_logger().addFilter(_NoStepMetadataWarning())


# ----------------------------------------------------------------------------
# Model directories.
# ----------------------------------------------------------------------------
def _check_metadata(metadata: dict[str, Any], where: str) -> dict[str, Any]:
  missing = [k for k in REQUIRED_METADATA if k not in metadata]
  if missing:
    raise CheckpointError(f'{where}: metadata lacks {missing}; it needs the keys '
                          f'{list(REQUIRED_METADATA)}.')
  return metadata


def _numpy_restore_args(tree_metadata: Any) -> Any:
  # Host numpy arrays: loadable on any topology, the caller places them on devices.
  return jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree_metadata)


def _restore_numpy(path: str) -> Any:
  with ocp.PyTreeCheckpointer() as ckptr:
    meta = ckptr.metadata(path)
    tree = getattr(meta, 'item_metadata', None)
    tree = getattr(tree, 'tree', tree) if tree is not None else getattr(meta, 'tree', meta)
    return ckptr.restore(path, args=ocp.args.PyTreeRestore(
        restore_args=_numpy_restore_args(tree)))


def save_model(directory: str, variables: dict[str, Any], metadata: dict[str, Any]) -> None:
  """Writes {'params', 'batch_stats'} and metadata.json to a new directory."""
  _check_metadata(metadata, directory)
  directory = os.path.abspath(directory)
  if os.path.exists(os.path.join(directory, VARIABLES_DIR)):
    raise CheckpointError(f'{directory} already holds a model; choose a new directory.')
  tree = {'params': variables['params'], 'batch_stats': variables.get('batch_stats', {})}
  os.makedirs(directory, exist_ok=True)
  with ocp.PyTreeCheckpointer() as ckptr:
    ckptr.save(os.path.join(directory, VARIABLES_DIR), args=ocp.args.PyTreeSave(tree))
  if jax.process_index() == 0:
    with open(os.path.join(directory, METADATA_FILE), 'w') as f:
      json.dump(metadata, f, indent=2, sort_keys=True, default=str)


def _load_model_dir(directory: str) -> tuple[dict[str, Any], dict[str, Any]]:
  with open(os.path.join(directory, METADATA_FILE)) as f:
    metadata = _check_metadata(json.load(f), directory)
  try:
    tree = _restore_numpy(os.path.join(directory, VARIABLES_DIR))
  except Exception as e:  # Orbax raises many types; the user needs the path.
    raise CheckpointError(f'{directory}/{VARIABLES_DIR}: unreadable Orbax checkpoint '
                          f'({type(e).__name__}: {e}).') from e
  return {'params': tree['params'], 'batch_stats': tree.get('batch_stats', {}) or {}}, metadata


def _load_step_dir(step_dir: str) -> tuple[dict[str, Any], dict[str, Any]]:
  try:
    with open(os.path.join(step_dir, 'metadata', 'metadata')) as f:
      metadata = json.load(f)
    state = _restore_numpy(os.path.join(step_dir, 'state'))
  except Exception as e:
    raise CheckpointError(f'{step_dir}: unreadable training checkpoint '
                          f'({type(e).__name__}: {e}).') from e
  _check_metadata(metadata, step_dir)
  metadata = dict(metadata, step=int(np.asarray(state['step'])))
  return {'params': state['params'], 'batch_stats': state.get('batch_stats', {}) or {}}, metadata


def _step_dirs(root: str) -> list[int]:
  if not os.path.isdir(root):
    return []
  return sorted(int(n) for n in os.listdir(root)
                if n.isdigit() and os.path.isdir(os.path.join(root, n, 'state')))


def load_model(directory: str, which: str = 'latest') -> tuple[dict[str, Any], dict[str, Any]]:
  """Loads (variables, metadata) as host numpy arrays.

  `directory` is a model directory, a training workdir (its latest checkpoint, or the
  best by mIoU with `which='best'`), or one step directory of a workdir.
  """
  if which not in ('latest', 'best'):
    raise CheckpointError(f"which={which!r}: use 'latest' or 'best'.")
  directory = os.path.abspath(os.path.expanduser(str(directory)))
  if not os.path.isdir(directory):
    raise CheckpointError(f'{directory}: no such checkpoint directory.')
  if os.path.isfile(os.path.join(directory, METADATA_FILE)):
    return _load_model_dir(directory)
  if os.path.isdir(os.path.join(directory, 'state')):
    return _load_step_dir(directory)
  root = os.path.join(directory, BEST_DIR if which == 'best' else CHECKPOINTS_DIR)
  steps = _step_dirs(root)
  if not steps:
    raise CheckpointError(
        f'{directory}: neither a model directory ({METADATA_FILE} + {VARIABLES_DIR}/) nor a '
        f'training workdir with checkpoints in {os.path.basename(root)}/.')
  return _load_step_dir(os.path.join(root, str(steps[-1])))


# ----------------------------------------------------------------------------
# Training checkpoints.
# ----------------------------------------------------------------------------
def _encode_data_state(state: Any) -> Any:
  if isinstance(state, (bytes, bytearray)):
    return {'__bytes__': base64.b64encode(bytes(state)).decode('ascii')}
  return state


def _decode_data_state(state: Any) -> Any:
  if isinstance(state, dict) and set(state) == {'__bytes__'}:
    return base64.b64decode(state['__bytes__'])
  return state


def _gather_json(obj: Any) -> list[Any]:
  """Every process's JSON-able `obj`, in process order (a collective)."""
  if jax.process_count() == 1:
    return [obj]
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  data = np.frombuffer(json.dumps(obj).encode('utf-8'), np.uint8)
  sizes = multihost_utils.process_allgather(np.array([data.size], np.int32))
  padded = np.zeros(int(np.max(sizes)), np.uint8)
  padded[:data.size] = data
  everyone = multihost_utils.process_allgather(padded)
  return [json.loads(bytes(row[:int(n)]).decode('utf-8'))
          for row, n in zip(everyone, np.ravel(sizes))]


class TrainCheckpointManager:
  """Last `keep` checkpoints every `every_steps` steps plus the best by mIoU.

  Saves are asynchronous: the step loop continues while the arrays are written;
  a checkpoint only appears under its final name once complete, so a crash during a
  save leaves the previous one intact.
  """

  def __init__(self, workdir: str, *, every_steps: int, keep: int, keep_best: bool = True,
               async_save: bool = True):
    workdir = os.path.abspath(workdir)
    self.every_steps = int(every_steps)
    self.keep_best = keep_best
    item_names = ('state', 'data_state', 'config', 'metadata')

    def manager(sub, max_to_keep, best):
      options = ocp.CheckpointManagerOptions(
          max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True,
          enable_async_checkpointing=async_save,
          best_fn=(lambda m: m['score']) if best else None, best_mode='max',
          keep_checkpoints_without_metrics=not best)
      return ocp.CheckpointManager(os.path.join(workdir, sub), options=options,
                                   item_names=item_names)

    self._last = manager(CHECKPOINTS_DIR, keep, best=False)
    self._best = manager(BEST_DIR, 1, best=True) if keep_best else None

  def latest_step(self) -> int | None:
    return self._last.latest_step()

  def best_score(self) -> float | None:
    """mIoU (segmentation) or top-1 (classification) of the kept best checkpoint."""
    if self._best is None or self._best.best_step() is None:
      return None
    metrics = self._best.metrics(self._best.best_step())
    return None if metrics is None else float(metrics['score'])

  def _args(self, state, data_state, config, metadata):
    data = {'processes': [_encode_data_state(s) for s in _gather_json(
        _encode_data_state(data_state))]}
    config_json = json.loads(config.to_json_best_effort()) if hasattr(
        config, 'to_json_best_effort') else dict(config)
    return ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data_state=ocp.args.JsonSave(data),
        config=ocp.args.JsonSave(config_json),
        metadata=ocp.args.JsonSave(_check_metadata(dict(metadata), 'metadata')))

  def save(self, step: int, state: Any, *, data_state: Any, config: Any,
           metadata: dict[str, Any], force: bool = False) -> bool:
    """Saves when `step` is a multiple of every_steps (or `force`); returns whether."""
    if not force and (self.every_steps <= 0 or step % self.every_steps):
      return False
    if step in self._last.all_steps():
      return False
    self._last.save(step, args=self._args(state, data_state, config, metadata), force=True)
    return True

  def save_best(self, step: int, state: Any, score: float, *, data_state: Any, config: Any,
                metadata: dict[str, Any]) -> bool:
    """Keeps this state in best/ when `score` (mIoU or top-1) beats the best so far."""
    if self._best is None:
      return False
    best = self.best_score()
    if best is not None and score <= best:
      return False
    self._best.save(step, args=self._args(state, data_state, config, metadata),
                    metrics={'score': float(score)}, force=True)
    logging.info('New best evaluation score %.4f at step %d (previous %s).', score, step, best)
    return True

  def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, Any, int]:
    """(state, this process's data iterator state, step) of `step` or the latest.

    `abstract_state` is a pytree of jax.ShapeDtypeStruct with shardings: arrays come
    back already sharded.
    """
    step = self._last.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f'{self._last.directory}: no checkpoint to restore.')
    restored = self._last.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data_state=ocp.args.JsonRestore()))
    processes = restored['data_state']['processes']
    if len(processes) != jax.process_count():
      raise CheckpointError(
          f'checkpoint step {step} was written by {len(processes)} processes, this run has '
          f'{jax.process_count()}; the data iterator state cannot be split differently.')
    return restored['state'], _decode_data_state(processes[jax.process_index()]), step

  def wait(self) -> None:
    self._last.wait_until_finished()
    if self._best is not None:
      self._best.wait_until_finished()

  def close(self) -> None:
    self._last.close()
    if self._best is not None:
      self._best.close()

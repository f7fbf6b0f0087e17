"""Orbax checkpoints: model directories and training checkpoints (the only Orbax user).

Two layouts, both readable by `load_model`:

* A model directory (written by `save_model`: the converter, export, the end of
  training)::

      DIR/metadata.json      model, head, num_classes, options, source[, dataset]
      DIR/variables/         Orbax pytree {'params', 'batch_stats'}

* A training workdir (written by `TrainCheckpointManager`)::

      WORKDIR/config.json                   the accepted config of the run
      WORKDIR/checkpoints/<step>/{state,data_state,config,metadata}   the last K
      WORKDIR/best/<step>/...               the best by the task's score

  `state` holds step, params, batch_stats, opt_state and rng; `data_state` the data
  iterator state (JSON, written once: it is a function of seed and step, the same on
  every process, so a run may resume on another process count); `config` the run's
  config (JSON); `metadata` the same model metadata as a model directory. Workdirs
  written before the data state was stored once (one copy per process) still restore.

Every step directory is listed and read through an Orbax CheckpointManager, so steps
whose save was not finalized (`*.orbax-checkpoint-tmp*`) are never seen. A step that
cannot be read is reported in one line and the newest readable one is used instead;
the trainer moves the bad one aside (`<step>.unreadable`), nothing is deleted.
"""
from __future__ import annotations

import json
import logging as std_logging
import os
from typing import Any

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp

from hrnet_jax import train_checkpoints

METADATA_FILE = 'metadata.json'
VARIABLES_DIR = 'variables'
CHECKPOINTS_DIR = train_checkpoints.CHECKPOINTS_DIR
BEST_DIR = train_checkpoints.BEST_DIR
REQUIRED_METADATA = ('model', 'head', 'num_classes', 'options', 'source')

CheckpointError = train_checkpoints.CheckpointError
CheckpointSaveError = train_checkpoints.CheckpointSaveError
WorkdirConfigError = train_checkpoints.WorkdirConfigError
TrainCheckpointManager = train_checkpoints.TrainCheckpointManager
check_workdir_config = train_checkpoints.check_workdir_config
describe_error = train_checkpoints.describe_error
open_read_only = train_checkpoints.open_read_only


class _NoStepMetadataWarning(std_logging.Filter):
  """Reading one item (`state/`) of a step directory on its own is how load_model reads
  training checkpoints; Orbax warns that the step-level metadata is not in the item."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return not str(record.msg).startswith('Metadata file does not exist')


logging.get_absl_logger().addFilter(_NoStepMetadataWarning())


def check_metadata(metadata: dict[str, Any], where: str) -> dict[str, Any]:
  """`metadata` if it has the keys create_model needs, else CheckpointError."""
  missing = [k for k in REQUIRED_METADATA if k not in metadata]
  if missing:
    raise CheckpointError(f'{where}: metadata lacks {missing}; it needs the keys '
                          f'{list(REQUIRED_METADATA)}.')
  return metadata


def _numpy_restore_args(tree_metadata: Any) -> Any:
  # Host numpy arrays: loadable on any topology, the caller places them on devices.
  return jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree_metadata)


def _tree_of(meta: Any) -> Any:
  tree = getattr(meta, 'item_metadata', None)
  return getattr(tree, 'tree', tree) if tree is not None else getattr(meta, 'tree', meta)


def _restore_numpy(path: str) -> Any:
  with ocp.PyTreeCheckpointer() as ckptr:
    tree = _tree_of(ckptr.metadata(path))
    return ckptr.restore(path, args=ocp.args.PyTreeRestore(
        restore_args=_numpy_restore_args(tree)))


# ----------------------------------------------------------------------------
# Model directories.
# ----------------------------------------------------------------------------
def save_model(directory: str, variables: dict[str, Any], metadata: dict[str, Any]) -> None:
  """Writes {'params', 'batch_stats'} and metadata.json to a new directory."""
  check_metadata(metadata, directory)
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
    metadata = check_metadata(json.load(f), directory)
  try:
    tree = _restore_numpy(os.path.join(directory, VARIABLES_DIR))
  except Exception as e:  # Orbax raises many types; the user needs the path.
    raise CheckpointError(f'{directory}/{VARIABLES_DIR}: unreadable Orbax checkpoint '
                          f'({describe_error(e)}).') from e
  return {'params': tree['params'], 'batch_stats': tree.get('batch_stats', {}) or {}}, metadata


# ----------------------------------------------------------------------------
# Training workdirs, read-only (eval, predict, export, convert, init_checkpoint).
# ----------------------------------------------------------------------------
def _read_step(manager: ocp.CheckpointManager, step: int) -> tuple[dict, dict]:
  """(variables, metadata) of one step as host numpy arrays, through the manager."""
  tree = _tree_of(manager.item_metadata(step)['state'])
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.PyTreeRestore(restore_args=_numpy_restore_args(tree)),
      metadata=ocp.args.JsonRestore()))
  state, metadata = restored['state'], dict(restored['metadata'])
  check_metadata(metadata, f'{manager.directory}/{step}')
  metadata['step'] = int(np.asarray(state['step']))
  return ({'params': state['params'], 'batch_stats': state.get('batch_stats', {}) or {}},
          metadata)


def _load_training(root: str, which: str) -> tuple[dict[str, Any], dict[str, Any]]:
  """The newest readable step of `root` (or step `which`); unreadable ones are logged."""
  with train_checkpoints.open_read_only(root) as manager:
    steps = sorted(manager.all_steps(), reverse=True)
    if which.isdigit():
      if int(which) not in steps:
        raise CheckpointError(f'{root}: no step {which}; it holds steps '
                              f'{sorted(steps) or "none"}.')
      steps = [int(which)]
    if not steps:
      raise CheckpointError(f'{root}: no finalized checkpoint in it.')
    failures = []
    for step in steps:
      try:
        with train_checkpoints.abandoned_reads_quiet():
          result = _read_step(manager, step)
      except Exception as e:  # pylint: disable=broad-except  # Orbax raises many types
        failures.append((step, describe_error(e)))
        continue
      for bad, cause in failures:
        logging.warning('Checkpoint %s/%d is unreadable (%s); using step %d instead.',
                        root, bad, cause, step)
      return result
    causes = '; '.join(f'step {bad}: {cause}' for bad, cause in failures)
    raise CheckpointError(f'{root}: no readable checkpoint ({causes}).')


def load_model(directory: str, which: str = 'latest') -> tuple[dict[str, Any], dict[str, Any]]:
  """Loads (variables, metadata) as host numpy arrays.

  `directory` is a model directory, a training workdir (its newest readable
  checkpoint; `which='best'` the best by the task's score; `which='<step>'` that
  step), or one step directory of a workdir.
  """
  which = str(which)
  if which not in ('latest', 'best') and not which.isdigit():
    raise CheckpointError(f"which={which!r}: use 'latest', 'best' or a step number.")
  directory = os.path.abspath(os.path.expanduser(str(directory)))
  if not os.path.isdir(directory):
    if os.path.exists(directory):
      raise CheckpointError(f'{directory}: is a file, not a checkpoint directory.')
    raise CheckpointError(f'{directory}: no such checkpoint directory.')
  if os.path.isfile(os.path.join(directory, METADATA_FILE)):
    return _load_model_dir(directory)
  if os.path.isdir(os.path.join(directory, 'state')):   # one step directory
    name = os.path.basename(directory)
    if not name.isdigit():
      raise CheckpointError(f'{directory}: a step directory must be named by its step.')
    return _load_training(os.path.dirname(directory), name)
  root = os.path.join(directory, BEST_DIR if which == 'best' else CHECKPOINTS_DIR)
  if not os.path.isdir(root):
    raise CheckpointError(
        f'{directory}: neither a model directory ({METADATA_FILE} + {VARIABLES_DIR}/) nor a '
        f'training workdir with checkpoints in {os.path.basename(root)}/.')
  return _load_training(root, 'latest' if which == 'best' else which)

"""Model directories and read-only access to training workdirs (eval, predict, export,
convert, init_checkpoint); both layouts are described in the package docstring."""
from __future__ import annotations

import json
import os
from typing import Any

from absl import logging
import jax

from hrnet_jax.checkpointing import store
from hrnet_jax.checkpointing.errors import CheckpointError, abandoned_reads_quiet, describe_error
from hrnet_jax.checkpointing.metadata import METADATA_FILE, VARIABLES_DIR, check_metadata


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
  store.save_tree(os.path.join(directory, VARIABLES_DIR), tree)
  if jax.process_index() == 0:
    with open(os.path.join(directory, METADATA_FILE), 'w') as f:
      json.dump(metadata, f, indent=2, sort_keys=True, default=str)


def _load_model_dir(directory: str) -> tuple[dict[str, Any], dict[str, Any]]:
  with open(os.path.join(directory, METADATA_FILE)) as f:
    metadata = check_metadata(json.load(f), directory)
  try:
    tree = store.restore_numpy(os.path.join(directory, VARIABLES_DIR))
  except Exception as e:  # Orbax raises many types; the user needs the path.
    raise CheckpointError(f'{directory}/{VARIABLES_DIR}: unreadable Orbax checkpoint '
                          f'({describe_error(e)}).') from e
  return {'params': tree['params'], 'batch_stats': tree.get('batch_stats', {}) or {}}, metadata


# ----------------------------------------------------------------------------
# Training workdirs, read-only.
# ----------------------------------------------------------------------------
def _load_training(root: str, which: str) -> tuple[dict[str, Any], dict[str, Any]]:
  """The newest readable step of `root` (or step `which`); unreadable ones are logged."""
  with store.open_read_only(root) as manager:
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
        with abandoned_reads_quiet():
          result = store.read_step(manager, step)
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
  root = os.path.join(directory, store.BEST_DIR if which == 'best' else store.CHECKPOINTS_DIR)
  if not os.path.isdir(root):
    raise CheckpointError(
        f'{directory}: neither a model directory ({METADATA_FILE} + {VARIABLES_DIR}/) nor a '
        f'training workdir with checkpoints in {os.path.basename(root)}/.')
  return _load_training(root, 'latest' if which == 'best' else which)

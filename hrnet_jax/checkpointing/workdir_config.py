"""The workdir remembers its config: a restart of another model or dataset is refused.

`config.json` in the workdir is the accepted config of the run; when it was deleted,
the newest readable checkpoint's copy is used.
"""
from __future__ import annotations

import json
import os
from typing import Any

import jax

from hrnet_jax.checkpointing import store
from hrnet_jax.checkpointing.errors import WorkdirConfigError, describe_error

CONFIG_FILE = 'config.json'
# A restart may change anything but these (learning rate, steps, eval protocol...).
GUARDED_FIELDS = ('model.name', 'model.head', 'model.num_classes', 'data.name')


def _field(tree: Any, dotted: str) -> Any:
  for key in dotted.split('.'):
    if tree is None:
      return None
    tree = tree.get(key) if hasattr(tree, 'get') else None
  return tree


def _recorded_config(workdir: str) -> dict[str, Any] | None:
  path = os.path.join(workdir, CONFIG_FILE)
  if os.path.isfile(path):
    try:
      with open(path) as f:
        return json.load(f)
    except (OSError, ValueError) as e:
      raise WorkdirConfigError(f'{path}: unreadable ({describe_error(e)}); restore it or '
                               'use a new --workdir.') from None
  root = os.path.join(workdir, store.CHECKPOINTS_DIR)
  if not os.path.isdir(root):
    return None
  return store.newest_readable_config(root)   # config.json was deleted


def check_workdir_config(config: Any, workdir: str) -> None:
  """Refuses a restart whose model, head, classes or dataset differ; records `config`.

  Runs before anything else is written: config.json changes only when the run is
  accepted. The workdir is created if needed.
  """
  workdir = os.path.abspath(os.path.expanduser(workdir))
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise NotADirectoryError(20, 'is a file, not a directory (--workdir)', workdir)
  recorded = _recorded_config(workdir) if os.path.isdir(workdir) else None
  if recorded is not None:
    new = json.loads(config.to_json_best_effort())
    differences = [f'{name} {_field(recorded, name)!r} -> {_field(new, name)!r}'
                   for name in GUARDED_FIELDS
                   if _field(recorded, name) is not None
                   and _field(recorded, name) != _field(new, name)]
    if differences:
      raise WorkdirConfigError(
          f'{workdir} holds a run of another model or dataset ({"; ".join(differences)}); '
          f'use a new --workdir, or the config recorded in {workdir}/{CONFIG_FILE}.')
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    tmp = os.path.join(workdir, f'.{CONFIG_FILE}.tmp')
    with open(tmp, 'w') as f:
      f.write(config.to_json_best_effort(indent=2))
    os.replace(tmp, os.path.join(workdir, CONFIG_FILE))

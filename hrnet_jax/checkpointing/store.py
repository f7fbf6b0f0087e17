"""Everything that touches Orbax: the training checkpoint manager and model-directory I/O.

The training checkpoints of a workdir: one Orbax CheckpointManager owns the policy.

The trainer needs four calls::

    check_workdir_config(config, workdir)        # before anything is written
    manager = TrainCheckpointManager(workdir, every_steps=..., keep=..., watch_signals=True)
    state, data_state, step = manager.restore_latest_readable(abstract_state)
    if manager.should_save(step): manager.save(step, state, ...)   # in the loop
    if manager.reached_preemption(step): ...save, wait, stop

* Saving: Orbax decides the interval steps (`save_interval_steps` through a
  FixedIntervalPolicy) and keeps the latest K (LatestN). SIGTERM and Ctrl-C request a
  save at a step every process agrees on (checkpointing/preemption.py). The best
  checkpoint by the task's score stays in its own `best/` directory (a second
  manager keeping BestN(1)): workdirs and `--which=best` readers written before
  keep working, and the latest-K rotation cannot drop the best one.
* A failed save (disk full, permission) raises CheckpointSaveError at the next call
  (async saves are checked at every `should_save`), naming the cause and the last
  good step, after removing the save's temporary directory; earlier checkpoints are
  not touched.
* Restoring falls back past unreadable steps, one log line each, and moves them aside
  as `<step>.unreadable` (never deleted) so that the run can write that step again.
"""
from __future__ import annotations

import base64
import contextlib
import json
import logging as std_logging
import os
import shutil
from typing import Any

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp

from hrnet_jax.checkpointing import preemption
from hrnet_jax.checkpointing.errors import (CheckpointError, CheckpointSaveError,
                                            abandoned_reads_quiet, describe_error)
from hrnet_jax.checkpointing.metadata import check_metadata

CHECKPOINTS_DIR = 'checkpoints'
BEST_DIR = 'best'
ITEMS = ('state', 'data_state', 'config', 'metadata')
_TMP_MARK = '.orbax-checkpoint-tmp'


class _NoStepMetadataWarning(std_logging.Filter):
  """Reading one item (`state/`) of a step directory on its own is how load_model reads
  training checkpoints; Orbax warns that the step-level metadata is not in the item."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return not str(record.msg).startswith('Metadata file does not exist')


logging.get_absl_logger().addFilter(_NoStepMetadataWarning())


def _barrier(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)


# ----------------------------------------------------------------------------
# Model directories and single steps, read as host numpy arrays.
# ----------------------------------------------------------------------------
def _numpy_restore_args(tree_metadata: Any) -> Any:
  # Host numpy arrays: loadable on any topology, the caller places them on devices.
  return jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree_metadata)


def _tree_of(meta: Any) -> Any:
  tree = getattr(meta, 'item_metadata', None)
  return getattr(tree, 'tree', tree) if tree is not None else getattr(meta, 'tree', meta)


def restore_numpy(path: str) -> Any:
  with ocp.PyTreeCheckpointer() as ckptr:
    tree = _tree_of(ckptr.metadata(path))
    return ckptr.restore(path, args=ocp.args.PyTreeRestore(
        restore_args=_numpy_restore_args(tree)))


def save_tree(path: str, tree: Any) -> None:
  """An Orbax pytree at `path` (a new directory)."""
  with ocp.PyTreeCheckpointer() as ckptr:
    ckptr.save(path, args=ocp.args.PyTreeSave(tree))


def read_step(manager: ocp.CheckpointManager, step: int) -> tuple[dict, dict]:
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


def newest_readable_config(root: str) -> dict[str, Any] | None:
  """The run config recorded in the newest readable step of `root`, if any."""
  with open_read_only(root) as manager:
    for step in sorted(manager.all_steps(), reverse=True):
      try:
        return dict(manager.restore(step, args=ocp.args.Composite(
            config=ocp.args.JsonRestore()))['config'])
      except Exception:  # pylint: disable=broad-except  # unreadable: try an older one
        continue
  return None


# ----------------------------------------------------------------------------
# Managers.
# ----------------------------------------------------------------------------
@contextlib.contextmanager
def open_read_only(root: str):
  """A read-only CheckpointManager of `root` (lists finalized steps only)."""
  handlers = {'state': ocp.PyTreeCheckpointHandler(),   # reads StandardSave's format
              **{name: ocp.JsonCheckpointHandler() for name in ITEMS[1:]}}
  manager = ocp.CheckpointManager(root, item_handlers=handlers,
                                  options=ocp.CheckpointManagerOptions(read_only=True))
  try:
    yield manager
  finally:
    manager.close()


def _encode(state: Any) -> Any:
  if isinstance(state, (bytes, bytearray)):
    return {'__bytes__': base64.b64encode(bytes(state)).decode('ascii')}
  return state


def _decode(state: Any) -> Any:
  if isinstance(state, dict) and set(state) == {'__bytes__'}:
    return base64.b64decode(state['__bytes__'])
  return state


def _loader_state(saved: dict[str, Any]) -> Any:
  if 'loader' in saved:
    return _decode(saved['loader'])
  # Written before the state was stored once: one identical copy per process (the
  # loader's state carries no process index), so any copy fits any process count.
  copies = saved['processes']
  return _decode(copies[jax.process_index()] if len(copies) == jax.process_count()
                 else copies[0])


class TrainCheckpointManager:
  """The latest `keep` checkpoints every `every_steps` steps, plus the best by score."""

  def __init__(self, workdir: str, *, every_steps: int, keep: int, keep_best: bool = True,
               async_save: bool = True, watch_signals: bool = False):
    self.workdir = os.path.abspath(workdir)
    self.every_steps = int(every_steps)
    self.root = os.path.join(self.workdir, CHECKPOINTS_DIR)
    policies = ocp.checkpoint_managers
    save_policy = policies.AnySavePolicy(
        [policies.FixedIntervalPolicy(self.every_steps)] if self.every_steps > 0 else [])
    self._last = ocp.CheckpointManager(self.root, item_names=ITEMS, options=(
        ocp.CheckpointManagerOptions(
            create=True, cleanup_tmp_directories=True,
            enable_async_checkpointing=async_save, save_decision_policy=save_policy,
            preservation_policy=policies.LatestN(n=int(keep)))))
    self._best = None
    if keep_best:
      self._best = ocp.CheckpointManager(
          os.path.join(self.workdir, BEST_DIR), item_names=ITEMS,
          options=ocp.CheckpointManagerOptions(
              create=True, cleanup_tmp_directories=True,
              enable_async_checkpointing=async_save,
              best_fn=lambda m: m['score'], best_mode='max',
              preservation_policy=policies.BestN(
                  get_metric_fn=lambda m: m['score'], reverse=False, n=1,
                  keep_checkpoints_without_metrics=False)))
    self._watch = preemption.PreemptionWatch() if watch_signals else None
    self._pending: list[tuple[ocp.CheckpointManager, int]] = []

  # --- policy ------------------------------------------------------------------
  def reached_preemption(self, step: int) -> bool:
    """True at the step where every process saves and stops after SIGTERM/SIGINT."""
    return self._watch is not None and self._watch.reached(step)

  @property
  def preemption_signal(self) -> str | None:
    return None if self._watch is None else self._watch.requested

  def should_save(self, step: int) -> bool:
    """Whether `step` is a save step (interval or preemption); raises a failed save's
    CheckpointSaveError (call it every step)."""
    self._poll()
    return self.reached_preemption(step) or self._last.should_save(step)

  def latest_step(self) -> int | None:
    return self._last.latest_step()

  def best_score(self) -> float | None:
    """The score (mIoU, top-1) of the kept best checkpoint."""
    if self._best is None or self._best.best_step() is None:
      return None
    metrics = self._best.metrics(self._best.best_step())
    return None if metrics is None else float(metrics['score'])

  # --- saving ------------------------------------------------------------------
  def _args(self, state, data_state, config, metadata):
    config_json = json.loads(config.to_json_best_effort()) if hasattr(
        config, 'to_json_best_effort') else dict(config)
    return ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data_state=ocp.args.JsonSave({'version': 2, 'loader': _encode(data_state)}),
        config=ocp.args.JsonSave(config_json),
        metadata=ocp.args.JsonSave(check_metadata(dict(metadata), 'metadata')))

  def _saved_steps(self, manager) -> list[int]:
    return [s for s in manager.all_steps()
            if os.path.isdir(os.path.join(str(manager.directory), str(s)))]

  def _fail(self, manager, step: int, error: BaseException):
    self._pending = []
    with contextlib.suppress(Exception):
      manager.reload()
    if jax.process_index() == 0:
      directory = str(manager.directory)
      for name in os.listdir(directory) if os.path.isdir(directory) else ():
        if _TMP_MARK in name:
          shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
    good = [s for s in self._saved_steps(self._last) if s != step]
    last = max(good) if good else None
    cause = describe_error(error)
    where = f'step {last} in {self.root}' if last is not None else 'none (no checkpoint yet)'
    raise CheckpointSaveError(
        f'saving the checkpoint of step {step} in {manager.directory} failed ({cause}); '
        f'training stopped. Last good checkpoint: {where}. Fix the cause and rerun the '
        'same command to resume.', cause=cause, last_good_step=last) from error

  def _poll(self, block: bool = False) -> None:
    """Raises CheckpointSaveError when a finished asynchronous save failed."""
    for manager, step in list(self._pending):
      if not block and manager.is_saving_in_progress():
        continue
      self._pending.remove((manager, step))
      try:
        manager.wait_until_finished()
        manager.check_for_errors()
      except Exception as e:  # pylint: disable=broad-except  # Orbax/TensorStore types
        self._fail(manager, step, e)
      if not os.path.isdir(os.path.join(str(manager.directory), str(step))):
        self._fail(manager, step, RuntimeError('the save was not finalized'))

  def _save(self, manager, step, args, metrics=None) -> None:
    self._poll(block=True)   # one save at a time: Orbax would wait for it anyway
    try:
      manager.save(step, args=args, metrics=metrics, force=True)
    except Exception as e:  # pylint: disable=broad-except
      self._fail(manager, step, e)
    self._pending.append((manager, step))

  def save(self, step: int, state: Any, *, data_state: Any, config: Any,
           metadata: dict[str, Any], force: bool = False) -> bool:
    """Saves at save steps (see should_save) or when `force`; returns whether it did."""
    if not force and not self.should_save(step):
      return False
    if step in self._last.all_steps():   # saved, or being saved
      return False
    self._save(self._last, step, self._args(state, data_state, config, metadata))
    return True

  def save_best(self, step: int, state: Any, score: float, *, data_state: Any, config: Any,
                metadata: dict[str, Any]) -> bool:
    """Keeps this state in best/ when `score` (mIoU or top-1) beats the best so far."""
    if self._best is None:
      return False
    self._poll(block=True)
    best = self.best_score()
    if best is not None and score <= best:
      return False
    self._save(self._best, step, self._args(state, data_state, config, metadata),
               metrics={'score': float(score)})
    logging.info('New best evaluation score %.4f at step %d (previous %s).', score, step, best)
    return True

  def wait(self) -> None:
    """Blocks until the saves are on disk; raises CheckpointSaveError if one failed."""
    self._poll(block=True)

  # --- restoring ---------------------------------------------------------------
  def _set_aside(self, step: int) -> str:
    base = os.path.join(self.root, f'{step}.unreadable')
    target, n = base, 1
    while os.path.exists(target):
      target, n = f'{base}.{n}', n + 1
    if jax.process_index() == 0:
      os.rename(os.path.join(self.root, str(step)), target)
    return target

  def restore_latest_readable(self, abstract_state: Any, step: int | None = None
                              ) -> tuple[Any, Any, int]:
    """(state, data iterator state, step) of `step`, or of the newest readable step.

    `abstract_state` is a pytree of jax.ShapeDtypeStruct with shardings: arrays come
    back already sharded. An unreadable latest step is logged in one line and moved
    aside once an older readable one is found.
    """
    steps = sorted(self._last.all_steps(), reverse=True)
    if step is not None:
      steps = [int(step)] if int(step) in steps else []
    if not steps:
      raise CheckpointError(f'{self.root}: no checkpoint to restore'
                            + (f' at step {step}.' if step is not None else '.'))
    bad = []
    for candidate in steps:
      try:
        with abandoned_reads_quiet():
          restored = self._last.restore(candidate, args=ocp.args.Composite(
              state=ocp.args.StandardRestore(abstract_state),
              data_state=ocp.args.JsonRestore()))
        loader_state = _loader_state(restored['data_state'])
      except Exception as e:  # pylint: disable=broad-except  # Orbax raises many types
        bad.append((candidate, describe_error(e)))
        if step is not None:
          break
        continue
      for bad_step, cause in bad:
        moved = self._set_aside(bad_step)
        logging.warning('Checkpoint step %d is unreadable (%s): moved to %s; resuming from '
                        'step %d instead.', bad_step, cause, moved, candidate)
      if bad:
        _barrier('hrnet_jax:set_aside')
        self._last.reload()
      return restored['state'], loader_state, candidate
    causes = '; '.join(f'step {s}: {c}' for s, c in bad)
    raise CheckpointError(f'{self.root}: no readable checkpoint ({causes}); move the '
                          'directory aside to start from scratch.')

  def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, Any, int]:
    """Same as restore_latest_readable."""
    return self.restore_latest_readable(abstract_state, step)

  def close(self) -> None:
    """Waits for the saves, puts the signal handlers back; never raises a save error
    twice (the loop has reported it already)."""
    if self._watch is not None:
      self._watch.close()
    for manager in (self._last, self._best):
      if manager is not None:
        try:
          manager.close()
        except Exception as e:  # pylint: disable=broad-except
          logging.warning('closing %s: %s', manager.directory, describe_error(e))

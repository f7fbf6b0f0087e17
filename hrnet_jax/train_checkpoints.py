"""Training checkpoints of a workdir: one Orbax CheckpointManager owns the policy.

The trainer needs four calls::

    check_workdir_config(config, workdir)        # before anything is written
    manager = TrainCheckpointManager(workdir, every_steps=..., keep=..., watch_signals=True)
    state, data_state, step = manager.restore_latest_readable(abstract_state)
    if manager.should_save(step): manager.save(step, state, ...)   # in the loop
    if manager.reached_preemption(step): ...save, wait, stop

* Saving: Orbax decides the interval steps (`save_interval_steps` through a
  FixedIntervalPolicy) and keeps the latest K (LatestN). SIGTERM and Ctrl-C request a
  save at a step every process agrees on (hrnet_jax/preemption.py). The best
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
import gc
import json
import logging as std_logging
import os
import shutil
import sys
from typing import Any

from absl import logging
import jax
import orbax.checkpoint as ocp

from hrnet_jax import preemption

CHECKPOINTS_DIR = 'checkpoints'
BEST_DIR = 'best'
CONFIG_FILE = 'config.json'
ITEMS = ('state', 'data_state', 'config', 'metadata')
# A restart may change anything but these (learning rate, steps, eval protocol...).
GUARDED_FIELDS = ('model.name', 'model.head', 'model.num_classes', 'data.name')
_TMP_MARK = '.orbax-checkpoint-tmp'


class CheckpointError(Exception):
  """A checkpoint directory is missing, empty or unreadable."""


class CheckpointSaveError(CheckpointError):
  """A save failed; training stops. `cause` is one line, `last_good_step` may be None."""

  def __init__(self, message: str, *, cause: str, last_good_step: int | None):
    super().__init__(message)
    self.cause = cause
    self.last_good_step = last_good_step


class WorkdirConfigError(CheckpointError):
  """A restart asks for another model, head, class count or dataset than the workdir's."""


def debug_enabled() -> bool:
  return os.environ.get('HRNET_DEBUG', '').lower() in ('1', 'true', 'yes')


class _OneLineOrbaxErrors(std_logging.Filter):
  """Orbax logs every failed save with a full traceback (hundreds of lines on a full
  disk); the error reaches the user as one line anyway. Warnings about what this
  module does on purpose are dropped. HRNET_DEBUG=1 keeps everything."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    if '/orbax/' not in record.pathname or debug_enabled():
      return True
    if str(record.msg).startswith(_EXPECTED_ORBAX_WARNINGS):
      return False
    if record.exc_info:
      record.exc_info, record.exc_text = None, None
    return True


# Said on purpose: items restored one at a time, read-only managers of finished runs.
_EXPECTED_ORBAX_WARNINGS = ('Item "', 'CheckpointManagerOptions.read_only=True',
                            'Given directory is read only')


logging.get_absl_logger().addFilter(_OneLineOrbaxErrors())

_OS_MESSAGES = ('No space left on device', 'Permission denied', 'Read-only file system',
                'Disk quota exceeded', 'No such file or directory', 'Not a directory')


@contextlib.contextmanager
def abandoned_reads_quiet():
  """Drops what Orbax's abandoned array reads print while an unreadable step is tried.

  When one array of a step fails, Orbax gives up on the others; their coroutines are
  closed later and each one turns the close into a new exception, which Python prints
  as 'Exception ignored in: <coroutine ...>' with a traceback, and asyncio logs the
  abandoned gather as 'exception was never retrieved' (hundreds of lines in all). The
  failure itself reaches the user as one line, so these are dropped unless
  HRNET_DEBUG=1.
  """
  previous = sys.unraisablehook

  def from_orbax(tb) -> bool:
    while tb is not None:
      if '/orbax/' in tb.tb_frame.f_code.co_filename:
        return True
      tb = tb.tb_next
    return False

  def hook(unraisable):
    if debug_enabled() or not from_orbax(unraisable.exc_traceback):
      previous(unraisable)

  class NeverRetrieved(std_logging.Filter):
    # asyncio's "exception was never retrieved" for the gather Orbax abandoned.
    def filter(self, record: std_logging.LogRecord) -> bool:
      return debug_enabled() or not (record.exc_info and from_orbax(record.exc_info[2]))

  asyncio_logger, quiet = std_logging.getLogger('asyncio'), NeverRetrieved()
  sys.unraisablehook = hook
  asyncio_logger.addFilter(quiet)
  try:
    yield
  finally:
    gc.collect()   # finalize the abandoned reads while the filters are in place
    sys.unraisablehook = previous
    asyncio_logger.removeFilter(quiet)


def describe_error(error: BaseException) -> str:
  """One line for an exception from Orbax/TensorStore/the OS: the root cause first."""
  seen, current = set(), error
  while current is not None and id(current) not in seen:
    seen.add(id(current))
    if isinstance(current, OSError) and current.errno:
      where = f': {current.filename}' if current.filename else ''
      return f'{os.strerror(current.errno)}{where}'
    text = str(current)
    for needle in _OS_MESSAGES:   # TensorStore wraps errno text in its own messages
      if needle.lower() in text.lower():
        return needle
    current = current.__cause__ or current.__context__
  lines = [l.strip() for l in str(error).splitlines() if l.strip()]
  first = lines[0] if lines else ''
  first = first if len(first) <= 200 else first[:197] + '...'
  return f'{type(error).__name__}: {first}' if first else type(error).__name__


def _barrier(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)


# ----------------------------------------------------------------------------
# The workdir remembers its config.
# ----------------------------------------------------------------------------
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
  root = os.path.join(workdir, CHECKPOINTS_DIR)
  if not os.path.isdir(root):
    return None
  with open_read_only(root) as manager:   # config.json was deleted: the checkpoint's
    for step in sorted(manager.all_steps(), reverse=True):
      try:
        return dict(manager.restore(step, args=ocp.args.Composite(
            config=ocp.args.JsonRestore()))['config'])
      except Exception:  # pylint: disable=broad-except  # unreadable: try an older one
        continue
  return None


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
    from hrnet_jax import checkpointing  # pylint: disable=g-import-not-at-top
    config_json = json.loads(config.to_json_best_effort()) if hasattr(
        config, 'to_json_best_effort') else dict(config)
    return ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data_state=ocp.args.JsonSave({'version': 2, 'loader': _encode(data_state)}),
        config=ocp.args.JsonSave(config_json),
        metadata=ocp.args.JsonSave(checkpointing.check_metadata(dict(metadata), 'metadata')))

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

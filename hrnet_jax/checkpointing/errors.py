"""Checkpoint errors as one line each, and Orbax's noise kept out of the user's terminal.

Orbax and TensorStore raise many exception types and log full tracebacks; a user needs
the path and the root cause (`describe_error`). HRNET_DEBUG=1 keeps everything.
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import logging as std_logging
import os
import sys

from absl import logging


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


_ASYNCIO_DIR = os.path.dirname(asyncio.__file__) + os.sep


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

  def files(tb) -> list[str]:
    names = []
    while tb is not None:
      names.append(tb.tb_frame.f_code.co_filename)
      tb = tb.tb_next
    return names

  def from_orbax(names) -> bool:
    return any('/orbax/' in name for name in names)

  def hook(unraisable):
    if debug_enabled() or not from_orbax(files(unraisable.exc_traceback)):
      previous(unraisable)

  class NeverRetrieved(std_logging.Filter):
    # asyncio's "exception was never retrieved" for the gather Orbax abandoned and
    # for the TensorStore reads in it.
    def filter(self, record: std_logging.LogRecord) -> bool:
      if debug_enabled() or not record.exc_info:
        return True
      names = files(record.exc_info[2])
      # A TensorStore future Orbax handed to asyncio fails in C: its traceback holds
      # asyncio's frames and nothing else (`_wrap_awaitable`).
      asyncio_only = bool(names) and all(n.startswith(_ASYNCIO_DIR) for n in names)
      return not (from_orbax(names) or asyncio_only)

  asyncio_logger, quiet = std_logging.getLogger('asyncio'), NeverRetrieved()
  sys.unraisablehook = hook
  asyncio_logger.addFilter(quiet)
  try:
    yield
  except BaseException:
    # A failed read leaves tasks that Orbax's event loop may finalise later, after this
    # block; the filters stay for the rest of the process (they drop Orbax's only).
    gc.collect()
    raise
  else:
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

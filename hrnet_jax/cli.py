"""What every command line of the project shares: flags, multi-host start-up, errors.

    from hrnet_jax import cli
    cli.define_flags(multihost=True)     # --debug [, --coordinator_address ...]
    ...
    cli.run(main)                        # instead of absl's app.run(main)

* A mistake (the project's own errors, bad flags or config overrides, missing or
  read-only paths, a full disk) ends the command with ONE line on stderr,
  `error: ...`, and exit status 1 (2 for usage errors): no traceback, and no library
  noise after it (Orbax's event loops and async threads are not torn down: the
  process exits right after the line). `--debug` or HRNET_DEBUG=1 re-raises with the
  full traceback instead.
* Multi-host: train.py and eval.py start jax.distributed the same way: on TPU pods,
  SLURM and Open MPI by themselves; elsewhere with --coordinator_address=HOST:PORT
  --num_processes=N --process_id=I (or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES,
  JAX_PROCESS_ID), or --distributed for a cluster JAX detects but this code does not.
"""
from __future__ import annotations

import errno
import os
import sys
from typing import Callable, Sequence

from absl import app
from absl import flags
from absl import logging

FLAGS = flags.FLAGS
DEBUG_ENV = 'HRNET_DEBUG'
EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130

_HINTS = {
    errno.ENOSPC: 'free some space or use another directory',
    errno.EDQUOT: 'free some space or use another directory',
    errno.EROFS: 'choose a writable location',
    errno.EACCES: 'check the permissions or choose another location',
    errno.EPERM: 'check the permissions or choose another location',
    errno.ENOENT: 'check the path',
    errno.ENOTDIR: 'a directory is needed there',
    errno.EISDIR: 'a file is needed there, not a directory',
    errno.EEXIST: 'choose another name',
}


def define_flags(*, multihost: bool = False, compiles: bool | None = None) -> None:
  """--debug for every command; the multi-host flags for train.py and eval.py.

  Commands that compile XLA programs (`compiles`, implied by `multihost`) also get
  --compilation_cache: `guard` points JAX's persistent cache there before `main` runs,
  and `run` restarts them with huge pages for XLA:CPU's buffers (`host_memory`).
  """
  flags.DEFINE_boolean('debug', False, f'Show full tracebacks (or set {DEBUG_ENV}=1).')
  if multihost if compiles is None else compiles:
    flags.DEFINE_string(
        'compilation_cache', None,
        'Directory of the persistent XLA compilation cache (default: $HRNET_JAX_'
        'COMPILATION_CACHE, else ~/.cache/hrnet-jax/xla); "none" turns it off.')
  if multihost:
    flags.DEFINE_string('coordinator_address', None,
                        'host:port of process 0, for multi-process runs.')
    flags.DEFINE_integer('num_processes', None, 'Number of processes.')
    flags.DEFINE_integer('process_id', None, 'Index of this process.')
    flags.DEFINE_boolean('distributed', False,
                         'Call jax.distributed.initialize() even when no cluster is '
                         'detected (JAX reads its cluster from the environment).')
    flags.DEFINE_integer('cpu_devices', None,
                         'Simulate this many CPU devices (testing sharding on a CPU).')


def debug_enabled() -> bool:
  return os.environ.get(DEBUG_ENV, '').lower() in ('1', 'true', 'yes')


def start_distributed() -> None:
  """The one multi-host start-up of train.py and eval.py; call before JAX uses a device."""
  if FLAGS.cpu_devices:
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                               f' --xla_force_host_platform_device_count={FLAGS.cpu_devices}')
  from hrnet_jax.training import distributed  # pylint: disable=g-import-not-at-top
  started = distributed.maybe_initialize(coordinator_address=FLAGS.coordinator_address,
                                         num_processes=FLAGS.num_processes,
                                         process_id=FLAGS.process_id)
  import jax  # pylint: disable=g-import-not-at-top
  if not started and FLAGS.distributed:
    jax.distributed.initialize()
  if jax.process_index() != 0:
    logging.set_verbosity(logging.WARNING)
  logging.info('JAX %s: %d processes, %d devices (%d local): %s', jax.__version__,
               jax.process_count(), jax.device_count(), jax.local_device_count(),
               jax.devices()[0].device_kind)


def writable_dir(path: str, flag: str) -> str:
  """Creates directory `path` if needed and checks it is writable, before any work."""
  import tempfile  # pylint: disable=g-import-not-at-top
  path = os.path.abspath(os.path.expanduser(path))
  if os.path.exists(path) and not os.path.isdir(path):
    raise NotADirectoryError(errno.ENOTDIR, f'is a file, not a directory ({flag})', path)
  os.makedirs(path, exist_ok=True)
  with tempfile.TemporaryFile(dir=path):
    pass
  return path


def describe(error: BaseException) -> str:
  """One line for an exception: OS errors by path and cause, others by their message."""
  if isinstance(error, OSError) and error.errno:
    cause = error.strerror or os.strerror(error.errno)
    where = f'{error.filename}: ' if error.filename else ''
    hint = _HINTS.get(error.errno)
    return f'{where}{cause[0].lower() + cause[1:]}' + (f' ({hint})' if hint else '')
  lines = [l.strip() for l in str(error).splitlines() if l.strip()]
  text = lines[0] if lines else type(error).__name__
  if isinstance(error, KeyError) and len(text) > 1 and text[0] == text[-1] == "'":
    text = text[1:-1]
  return text


def _user_errors() -> tuple[type[BaseException], ...]:
  """The exception types that are the user's mistakes (imported lazily: no JAX here)."""
  from hrnet_jax import checkpointing  # pylint: disable=g-import-not-at-top
  from hrnet_jax.conversion.errors import ConversionError  # pylint: disable=g-import-not-at-top
  from hrnet_jax.data.errors import DataError  # pylint: disable=g-import-not-at-top
  return (checkpointing.CheckpointError, DataError, ConversionError, ValueError, OSError,
          FloatingPointError, flags.Error)


def exit_with(message: str, code: int = EXIT_ERROR) -> None:
  """Prints `error: message` (one line) on stderr and leaves at once.

  os._exit: after a failure, interpreter shutdown would tear down Orbax's and
  TensorStore's asyncio loops and threads and print their complaints.
  """
  line = message if message.startswith('error: ') else f'error: {message}'
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except (OSError, ValueError):
      pass
  try:
    logging.flush()
  except Exception:  # pylint: disable=broad-except
    pass
  sys.stderr.write(line.replace('\n', ' ') + '\n')
  sys.stderr.flush()
  os._exit(code)   # pylint: disable=protected-access


def _is_closed_loop_noise(error_type, error) -> bool:
  return error_type is RuntimeError and str(error) == 'Event loop is closed'


def quiet_closed_event_loops() -> None:
  """Drops 'RuntimeError: Event loop is closed' printed from TensorStore's threads.

  When one read of an Orbax restore fails, Orbax closes its asyncio loop while
  TensorStore still completes the other reads; each completion calls back into the
  closed loop, and Python prints its traceback through sys.excepthook (hundreds of
  lines, at a random later time). They are harmless: the restore has already failed
  and been reported. HRNET_DEBUG=1 shows them.
  """
  previous_hook, previous_unraisable = sys.excepthook, sys.unraisablehook

  def hook(error_type, error, tb):
    if not (_is_closed_loop_noise(error_type, error) and not debug_enabled()):
      previous_hook(error_type, error, tb)

  def unraisable(info):
    if not (_is_closed_loop_noise(info.exc_type, info.exc_value) and not debug_enabled()):
      previous_unraisable(info)

  sys.excepthook, sys.unraisablehook = hook, unraisable


def guard(main: Callable[[Sequence[str]], int | None]) -> Callable[[Sequence[str]], None]:
  """`main` with every user mistake turned into one line and a non-zero exit."""

  def wrapped(argv):
    if getattr(FLAGS, 'debug', False):
      os.environ[DEBUG_ENV] = '1'
    debug = debug_enabled()
    quiet_closed_event_loops()
    try:
      if 'compilation_cache' in FLAGS:
        from hrnet_jax import compilation_cache  # pylint: disable=g-import-not-at-top
        compilation_cache.enable(FLAGS.compilation_cache)
      code = main(argv)
    except SystemExit as e:
      if debug or e.code is None or isinstance(e.code, int):
        raise
      exit_with(str(e.code))   # sys.exit('error: ...'): the line, then no shutdown noise
    except KeyboardInterrupt:
      if debug:
        raise
      exit_with('interrupted (Ctrl-C); nothing else was written.', EXIT_INTERRUPTED)
    except app.UsageError as e:
      if debug:
        raise
      exit_with(f'{describe(e)} (see --help)', EXIT_USAGE)
    except ModuleNotFoundError as e:
      if debug:
        raise
      exit_with(f'the package that provides {e.name!r} is not installed: install the '
                f'runtime with `pip install -r requirements.txt` (or '
                f'`pip install hrnet-jax[train]`)')
    except Exception as e:  # pylint: disable=broad-except  # sorted below
      if debug:
        raise
      if isinstance(e, _user_errors()):
        exit_with(describe(e))
      exit_with(f'{type(e).__name__}: {describe(e)} (unexpected; rerun with --debug or '
                f'{DEBUG_ENV}=1 for the traceback and report it)')
    if code:
      sys.exit(code)

  return wrapped


def parse_flags(argv: Sequence[str]) -> Sequence[str]:
  """absl flag parsing with a bad flag or config override reported in one line."""
  debug = '--debug' in argv or debug_enabled()
  try:
    return FLAGS(argv)
  except flags.Error as e:
    if debug:
      raise
    exit_with(f'{describe(e)} (see --help)', EXIT_USAGE)
  except (AttributeError, KeyError) as e:
    if debug:
      raise
    # ml_collections: AttributeError(KeyError("'lernrate'\nDid you mean ...?")).
    inner = e.args[0] if e.args and isinstance(e.args[0], BaseException) else e
    lines = str(inner.args[0] if inner.args else inner).splitlines() or ['?']
    key = lines[0].strip('\'" ')
    culprit = next((a.split('=')[0] for a in argv[1:]
                    if a.startswith('--config.') and key in a.split('=')[0].split('.')),
                   f'--config...{key}')
    hint = ' '.join(l.strip() for l in lines[1:])
    exit_with(f'{culprit}: the config has no field {key!r}. {hint}'.rstrip(), EXIT_USAGE)
  except Exception as e:  # pylint: disable=broad-except  # a config file that fails
    if debug:
      raise
    exit_with(f'{describe(e)} (while reading the flags and --config)', EXIT_USAGE)
  return argv  # unreachable


def run(main: Callable[[Sequence[str]], int | None]) -> None:
  """absl's app.run with the project's flag parser and one-line errors.

  Commands that compile restart first, on the CPU backend, with glibc's huge-page
  tunable (`host_memory`: the train step ran 1.4x faster).
  """
  if 'compilation_cache' in FLAGS:
    from hrnet_jax import host_memory  # pylint: disable=g-import-not-at-top
    try:
      host_memory.reexec_with_huge_pages()
    except ValueError as e:
      exit_with(str(e), EXIT_USAGE)
  app.run(guard(main), flags_parser=parse_flags)

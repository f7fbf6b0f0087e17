"""The persistent XLA compilation cache shared by train.py, eval.py, predict and export.

Compiling an HRNet step costs tens of seconds on a CPU (about a minute for W48), and a
restarted run, a second evaluation or a preempted TPU job would pay it again. JAX can
keep compiled executables on disk, keyed by the program, the backend and the flags, so
the second run of the same program loads it in a fraction of a second.

The default directory is `$XDG_CACHE_HOME/hrnet-jax/xla` (`~/.cache/hrnet-jax/xla`).
`HRNET_JAX_COMPILATION_CACHE` or the CLIs' `--compilation_cache` / the config field
`compilation_cache` move it; the value `none` (or `off`, `false`, empty) disables it.
A directory that JAX's own `JAX_COMPILATION_CACHE_DIR` names wins over the default.
"""
from __future__ import annotations

import os

ENV_VAR = 'HRNET_JAX_COMPILATION_CACHE'
_DISABLED = frozenset({'', 'none', 'off', 'false', '0', 'no'})

# Programs that compile faster than this are not worth a disk round trip; JAX's own
# default (1 s) would skip the small eval/predict programs that still cost ~0.5 s each.
_MIN_COMPILE_SECONDS = 0.2


def default_dir() -> str:
  """Where compiled programs go when nothing else is said."""
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'hrnet-jax', 'xla')


def resolve(setting: str | None = None) -> str | None:
  """The directory to use, or None when caching is off.

  `setting` comes from a flag or config field; None means "not given", which falls back to
  `$HRNET_JAX_COMPILATION_CACHE`, then `$JAX_COMPILATION_CACHE_DIR`, then `default_dir()`.
  """
  for value in (setting, os.environ.get(ENV_VAR), os.environ.get('JAX_COMPILATION_CACHE_DIR')):
    if value is None:
      continue
    value = str(value).strip()
    if value.lower() in _DISABLED:
      return None
    return os.path.abspath(os.path.expanduser(value))
  return default_dir()


def enable(setting: str | None = None) -> str | None:
  """Points JAX at the cache directory (created if missing); returns it, or None if off.

  Must run before the first compilation of the process. A directory that cannot be created
  (read-only home, say) turns the cache off with a warning instead of failing the run:
  the cache saves time, it is never needed for a correct result.
  """
  import jax  # pylint: disable=g-import-not-at-top  (data workers import this package without JAX)
  from absl import logging  # pylint: disable=g-import-not-at-top

  path = resolve(setting)
  if path is None:
    jax.config.update('jax_enable_compilation_cache', False)
    return None
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    logging.warning('Compilation cache disabled: cannot create %s (%s).', path, e.strerror or e)
    jax.config.update('jax_enable_compilation_cache', False)
    return None
  jax.config.update('jax_enable_compilation_cache', True)
  jax.config.update('jax_compilation_cache_dir', path)
  if 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS' not in os.environ:   # JAX's own setting wins
    jax.config.update('jax_persistent_cache_min_compile_time_secs', _MIN_COMPILE_SECONDS)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
  logging.info('XLA compilation cache: %s', path)
  return path

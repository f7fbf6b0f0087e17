"""Huge pages for XLA:CPU's buffers: the command lines restart themselves with glibc's THP tunable.

Each run of a compiled XLA:CPU program allocates its temporaries as large host blocks
and frees them at the end. glibc serves a block above its mmap threshold (at most
32 MiB) with a fresh `mmap` and returns it with `munmap`, so every run touches new
pages: hrnet_w48's train step at 1x256x512 took ~220,000 minor page faults per step,
each a 4 KiB page zeroed by the kernel (docs/performance.md, "Host memory"). PyTorch's
tensors are mostly below the threshold, so glibc keeps them; it faults ~0 pages per step.

glibc >= 2.35 can back its large blocks with transparent huge pages
(`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`: 2 MiB pages, 512x fewer faults, fewer TLB
misses); the train step ran 1.4x faster with it. glibc reads tunables only when a
process starts, so `reexec_with_huge_pages` restarts the command (the same interpreter
and arguments) with the tunable added, once, before any work. train.py, eval.py,
predict and export do that through `cli.run` on the CPU backend;
`HRNET_JAX_HUGE_PAGES=off` keeps the process as started. Code that imports hrnet-jax
gets the same by starting Python with that variable set.

(Keeping the freed blocks in the process instead, by `mallopt` with one arena and no
mmap, removed the faults too, but serialised the compiler threads' allocations:
compilation ~20 % slower. Not kept.)
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from typing import Sequence

ENV_VAR = 'HRNET_JAX_HUGE_PAGES'
TUNABLE = 'glibc.malloc.hugetlb=1'
_SETTINGS = {'on': True, 'auto': True, 'off': False}
_THP_MODE_FILE = '/sys/kernel/mm/transparent_hugepage/enabled'
# Packages that make jax's default backend an accelerator's.
_ACCELERATOR_PACKAGES = ('jax-cuda', 'jax_cuda', 'jax-rocm', 'jax_rocm', 'libtpu')


def enabled() -> bool:
  """`HRNET_JAX_HUGE_PAGES`: on (the default; `auto` is the same) or off."""
  value = os.environ.get(ENV_VAR, 'on').strip().lower() or 'on'
  if value not in _SETTINGS:
    raise ValueError(f'{ENV_VAR}={value!r} is not understood; use on (restart the command '
                     f"with glibc's huge-page tunable on the CPU backend, the default; auto "
                     f'is the same) or off.')
  return _SETTINGS[value]


def backend_is_cpu() -> bool:
  """Whether jax will run on the CPU, decided without starting its backends."""
  platforms = os.environ.get('JAX_PLATFORMS', '').strip().lower()
  if platforms:
    return platforms.split(',')[0].strip() == 'cpu'
  for dist in importlib.metadata.distributions():
    name = (dist.metadata['Name'] or '').lower()
    if name.startswith(_ACCELERATOR_PACKAGES):
      return False
  return True


def glibc_has_the_tunable() -> bool:
  """glibc >= 2.35 (the hugetlb tunable) on Linux."""
  if platform.system() != 'Linux':
    return False
  libc, version = platform.libc_ver()
  try:
    major, minor = (int(v) for v in version.split('.')[:2])
  except ValueError:
    return False
  return libc == 'glibc' and (major, minor) >= (2, 35)


def kernel_offers_huge_pages(mode_file: str = _THP_MODE_FILE) -> bool:
  """Transparent huge pages in mode 'always' or 'madvise' (not 'never')."""
  try:
    with open(mode_file, encoding='ascii') as f:
      text = f.read()
  except OSError:
    return False
  return '[always]' in text or '[madvise]' in text


def tunable_is_set() -> bool:
  return TUNABLE in os.environ.get('GLIBC_TUNABLES', '').split(':')


def wanted() -> bool:
  """Whether this process should run with the tunable and does not yet."""
  # The package scan of backend_is_cpu last: it is the one check that costs time.
  return (enabled() and not tunable_is_set() and bool(sys.executable)
          and glibc_has_the_tunable() and kernel_offers_huge_pages() and backend_is_cpu())


def environment_with_tunable() -> dict[str, str]:
  environ = dict(os.environ)
  current = environ.get('GLIBC_TUNABLES', '')
  environ['GLIBC_TUNABLES'] = f'{current}:{TUNABLE}' if current else TUNABLE
  return environ


def command_line() -> Sequence[str]:
  """This process's command line, `python -m module` included (`sys.orig_argv`)."""
  return [sys.executable, *sys.orig_argv[1:]]


def reexec_with_huge_pages() -> None:
  """Replaces this process by the same command with the tunable, where `wanted()`.

  Returns only when nothing is to be done. Call it before the command has done any
  work (nothing is kept across the restart); the tunable in the new environment
  stops a second restart.
  """
  if not wanted():
    return
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, command_line(), environment_with_tunable())

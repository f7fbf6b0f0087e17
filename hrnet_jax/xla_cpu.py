"""The XLA compiler options hrnet-jax's programs are compiled with on a CPU backend.

Why loop fusion is off on the CPU: an HRNet branch is a chain of residual blocks, and
each block's output `relu(bn(conv(x)) + residual)` is elementwise in the previous
block's output. XLA:CPU's instruction fusion duplicates cheap elementwise producers into
their consumers, so the layout copy that feeds a convolution's weight gradient (the
activation transposed to channels-major) recomputes the whole residual chain of its
branch, from the stem to that block: the W48 train step spent 1.7 s of its 4.2 s in
these copies (one of them, 108 ms, took 139 inputs). Without the `fusion` pass every
elementwise op runs once, on its own; measured on the 2-core machine, W48 seg at
1x256x512: forward+backward 4.39 s -> 2.63 s, forward 0.98 s -> 0.81 s, XLA compile of
the two 73 s -> 42 s (docs/performance.md has the table). Accelerator backends have no
such problem and keep their fusion.

`HRNET_JAX_XLA_CPU_FUSION=on` restores XLA's fusion (to measure it, or should a future
jaxlib fix the duplication); the compile options are part of the persistent
compilation cache's key, so both variants can live in one cache.
"""
from __future__ import annotations

import os
from typing import Any, Callable

ENV_VAR = 'HRNET_JAX_XLA_CPU_FUSION'
_CPU_OPTIONS = {'xla_disable_hlo_passes': 'fusion'}
_ON = frozenset({'on', 'xla', '1', 'true', 'yes'})
_OFF = frozenset({'', 'off', '0', 'false', 'no'})


def fusion_enabled() -> bool:
  """Whether XLA's loop fusion stays on for CPU programs (the environment variable)."""
  value = os.environ.get(ENV_VAR, 'off').strip().lower()
  if value in _ON:
    return True
  if value in _OFF:
    return False
  raise ValueError(f'{ENV_VAR}={value!r} is not understood; use "off" (the default: '
                   f'hrnet-jax disables XLA:CPU loop fusion) or "on" (keep XLA\'s fusion).')


def compiler_options(backend: str | None = None) -> dict[str, Any] | None:
  """Options for `jax.jit(..., compiler_options=...)`: None except on a CPU backend."""
  import jax  # pylint: disable=g-import-not-at-top  (data workers import the package without JAX)
  backend = backend or jax.default_backend()
  if backend != 'cpu' or fusion_enabled():
    return None
  return dict(_CPU_OPTIONS)


def jit(fun: Callable, **kwargs) -> Callable:
  """`jax.jit(fun, **kwargs)` with this backend's compiler options."""
  import jax  # pylint: disable=g-import-not-at-top
  options = compiler_options()
  if options:
    kwargs['compiler_options'] = {**options, **kwargs.get('compiler_options', {})}
  return jax.jit(fun, **kwargs)

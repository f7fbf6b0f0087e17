"""The XLA compiler options hrnet-jax's programs are compiled with on a CPU backend.

History, because it explains the override below: an HRNet branch is a chain of
residual blocks, and each block's output `relu(bn(conv(x)) + residual)` is elementwise
in the previous block's output. XLA:CPU's instruction fusion duplicates cheap
elementwise producers into their consumers, so the layout copy that feeds a
convolution's weight gradient recomputed the residual chain of its branch back to the
stem (the W48 train step spent 1.7 s of 4.2 s in such copies; one read 139 inputs).
Until the model cut those chains itself, this module switched the `fusion` pass off
for the full-size variants. Now `layers.residual_output` ends every link of the chain
with an operation XLA's fusion never duplicates, so fusion stays on everywhere, which
measured faster and compiles in half the time (docs/performance.md, W48 train step
2.77 s and 37 s of compilation with fusion and the cut, 2.85 s and 82 s without
fusion).

`HRNET_JAX_XLA_CPU_FUSION` still overrides: `off` compiles every program that runs the
network without the `fusion` pass (each elementwise op on its own; the evaluation's
resize-and-sum programs keep XLA's fusion either way), `on` and `auto` (the default) keep XLA's
fusion. The compile options are part of the persistent compilation cache's key.
"""
from __future__ import annotations

import os
from typing import Any, Callable

ENV_VAR = 'HRNET_JAX_XLA_CPU_FUSION'
_CPU_OPTIONS = {'xla_disable_hlo_passes': 'fusion'}
_SETTINGS = {'auto': True, 'on': True, 'off': False}
# The state initialiser runs once and is all random-number generation (threefry); LLVM
# optimisation of it costs more than it saves (hrnet_w48, bulk-sampled init: compile +
# run 6.0 + 3.5 s unoptimised, 9.9 + 1.0 s optimised).
_INIT_OPTIONS = {'xla_backend_optimization_level': 0}


def fusion_enabled() -> bool:
  """Whether XLA's loop fusion stays on for hrnet-jax's CPU programs."""
  value = os.environ.get(ENV_VAR, 'auto').strip().lower() or 'auto'
  if value not in _SETTINGS:
    raise ValueError(f'{ENV_VAR}={value!r} is not understood; use auto (the default: '
                     f"XLA's fusion), on or off (no loop fusion).")
  return _SETTINGS[value]


def compiler_options(backend: str | None = None) -> dict[str, Any] | None:
  """Options for `jax.jit(..., compiler_options=...)` of a program, or None."""
  import jax  # pylint: disable=g-import-not-at-top  (data workers import the package without JAX)
  backend = backend or jax.default_backend()
  if backend != 'cpu' or fusion_enabled():
    return None
  return dict(_CPU_OPTIONS)


def initializer_options(backend: str | None = None) -> dict[str, Any] | None:
  """Options for compiling the one-off state initialiser, or None."""
  import jax  # pylint: disable=g-import-not-at-top
  return dict(_INIT_OPTIONS) if (backend or jax.default_backend()) == 'cpu' else None


def jit(fun: Callable, **kwargs) -> Callable:
  """`jax.jit(fun, **kwargs)` with the compiler options for this backend."""
  import jax  # pylint: disable=g-import-not-at-top
  options = compiler_options()
  if options:
    kwargs['compiler_options'] = {**options, **kwargs.get('compiler_options', {})}
  return jax.jit(fun, **kwargs)

"""The XLA compiler options hrnet-jax's programs are compiled with on a CPU backend.

Why loop fusion is off for the deep variants on the CPU: an HRNet branch is a chain of
residual blocks, and each block's output `relu(bn(conv(x)) + residual)` is elementwise
in the previous block's output. XLA:CPU's instruction fusion duplicates cheap
elementwise producers into their consumers, so the layout copy that feeds a
convolution's weight gradient (the activation transposed to channels-major) recomputes
the residual chain of its branch back to the stem: the W48 train step spent 1.7 s of
its 4.2 s in these copies (one of them, 108 ms, read 139 inputs). The cost grows with
the square of the chain. Without the `fusion` pass every elementwise op runs once, on
its own, which costs memory traffic that fusion would have saved. Measured on the
2-core machine (docs/performance.md), fusion off against on:
  * hrnet_w48 seg 1x256x512, forward+backward 2.84 s vs 3.73 s, forward 0.81 s vs
    0.95 s, compile 42 s vs 69 s (interleaved in one process, benchmarks/
    xla_cpu_fusion.py: 1.47x and 1.30x faster without); whole-image 1024x2048
    inference 15.3 s vs 19.2 s;
  * hrnet_w18_small_v2 (a chain of 14 blocks): forward+backward 0.50 s vs 0.53 s but
    forward 0.158 s vs 0.123 s;
  * the quickstart's hrnet_w18_small_v1 train step (7 blocks, 8x128x128): 358 ms vs
    288 ms.
So fusion goes off where the residual chain is long (`LONG_CHAIN` blocks or more: the
full-size variants, 36 blocks) and stays on for the small variants and for models
this module does not know. Accelerator backends keep their fusion.

`HRNET_JAX_XLA_CPU_FUSION` overrides the rule: `on` keeps XLA's fusion everywhere,
`off` disables it everywhere, `auto` (the default) is the rule above. The compile
options are part of the persistent compilation cache's key, so variants can share it.
"""
from __future__ import annotations

import os
from typing import Any, Callable

ENV_VAR = 'HRNET_JAX_XLA_CPU_FUSION'
LONG_CHAIN = 24
_CPU_OPTIONS = {'xla_disable_hlo_passes': 'fusion'}
_SETTINGS = {'auto': None, 'on': True, 'off': False}
# The state initialiser runs once and is all random-number generation (threefry); LLVM
# optimisation of it takes longer than running it unoptimised (45 s vs 12 s on a CPU).
_INIT_OPTIONS = {'xla_backend_optimization_level': 0}


def residual_chain_length(model: Any) -> int | None:
  """Residual blocks on the highest-resolution branch of an HRNet, stem to head."""
  spec = getattr(model, 'spec', None)
  stages = getattr(spec, 'stages', None)
  if stages is None:
    return None
  return spec.stage1_blocks + sum(s.num_modules * max(s.num_blocks) for s in stages)


def fusion_enabled(model: Any = None) -> bool:
  """Whether XLA's loop fusion stays on for `model`'s CPU programs."""
  value = os.environ.get(ENV_VAR, 'auto').strip().lower() or 'auto'
  if value not in _SETTINGS:
    raise ValueError(f'{ENV_VAR}={value!r} is not understood; use auto (the default: off '
                     f'for HRNets with >= {LONG_CHAIN} residual blocks per branch), on or off.')
  if _SETTINGS[value] is not None:
    return _SETTINGS[value]
  chain = residual_chain_length(model)
  return chain is None or chain < LONG_CHAIN


def compiler_options(model: Any = None, backend: str | None = None) -> dict[str, Any] | None:
  """Options for `jax.jit(..., compiler_options=...)` of `model`'s programs, or None."""
  import jax  # pylint: disable=g-import-not-at-top  (data workers import the package without JAX)
  backend = backend or jax.default_backend()
  if backend != 'cpu' or fusion_enabled(model):
    return None
  return dict(_CPU_OPTIONS)


def initializer_options(backend: str | None = None) -> dict[str, Any] | None:
  """Options for compiling the one-off state initialiser, or None."""
  import jax  # pylint: disable=g-import-not-at-top
  return dict(_INIT_OPTIONS) if (backend or jax.default_backend()) == 'cpu' else None


def jit(fun: Callable, *, model: Any = None, **kwargs) -> Callable:
  """`jax.jit(fun, **kwargs)` with the compiler options for `model` on this backend."""
  import jax  # pylint: disable=g-import-not-at-top
  options = compiler_options(model)
  if options:
    kwargs['compiler_options'] = {**options, **kwargs.get('compiler_options', {})}
  return jax.jit(fun, **kwargs)

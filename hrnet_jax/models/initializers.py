"""Parameter initialisers, and a model initialisation that samples them in bulk.

Each initialiser here is an ordinary Flax initialiser (`init(key, shape, dtype)`), so
`model.init` works as usual. They also say how their values derive from one unit
sample (a standard normal or a U[0, 1) draw), which `init_variables` uses: Flax gives
every parameter its own key and sampling call, and compiled as one program those are
~300 copies of the threefry hash for hrnet_w48, which XLA:CPU took ~28 s to compile.
`init_variables` instead draws one unit sample per family for the whole model and
slices it into the parameters (docs/performance.md, "The state initialiser"). The
values differ from `model.init`'s for the same seed; the distributions are the same.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

_FAMILIES = ('normal', 'uniform')


@dataclasses.dataclass
class _Deferred:
  """The parameters whose sampling `init_variables` does itself, by variable path."""
  paths: dict[tuple[str, ...], Any] = dataclasses.field(default_factory=dict)
  calls: int = 0


_DEFERRING: contextvars.ContextVar[_Deferred | None] = contextvars.ContextVar(
    'hrnet_jax_deferred_init', default=None)


def _unit_sample(family: str, key: jax.Array, shape) -> jax.Array:
  """float32 N(0, 1) or U[0, 1) of `shape`: what every initialiser here transforms."""
  if family == 'normal':
    return jax.random.normal(key, shape, jnp.float32)
  return jax.random.uniform(key, shape, jnp.float32)


class _UnitInitializer:
  """An initialiser that is a fixed transform of a normal or uniform unit sample."""
  family: str

  def transform(self, unit: jax.Array, shape) -> jax.Array:
    raise NotImplementedError

  def __call__(self, key, shape, dtype=jnp.float32) -> jax.Array:
    shape = tuple(int(d) for d in shape)
    deferred = _DEFERRING.get()
    if deferred is not None:   # `param` records the path; init_variables samples it
      deferred.calls += 1
      return jnp.zeros(shape, dtype)
    return self.transform(_unit_sample(self.family, key, shape), shape).astype(dtype)


@dataclasses.dataclass(frozen=True)
class Normal(_UnitInitializer):
  """N(0, stddev^2), as torch.nn.init.normal_(std=stddev)."""
  stddev: float
  family = 'normal'

  def transform(self, unit, shape):
    return unit * self.stddev


@dataclasses.dataclass(frozen=True)
class KaimingNormalFanOut(_UnitInitializer):
  """torch.nn.init.kaiming_normal_(mode='fan_out', nonlinearity='relu') of an HWIO kernel.

  N(0, 2 / fan_out), fan_out = kernel area * output channels; untruncated, as torch's.
  """
  family = 'normal'

  def transform(self, unit, shape):
    fan_out = math.prod(shape[:-2]) * shape[-1]
    return unit * math.sqrt(2.0 / fan_out)


@dataclasses.dataclass(frozen=True)
class Uniform(_UnitInitializer):
  """U[low, high)."""
  low: float
  high: float
  family = 'uniform'

  def transform(self, unit, shape):
    return self.low + unit * (self.high - self.low)


def torch_default_bias(fan_in: int) -> Uniform:
  """PyTorch's default conv/linear bias init, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)
  return Uniform(-bound, bound)


def param(module, name: str, init, shape, dtype) -> jax.Array:
  """`module.param(name, init, shape, dtype)`, recording the variable for init_variables.

  Flax does not tell an initialiser which variable it makes, and values returned
  through a lifted transform (the remat lift) are new arrays, so the path is recorded
  here, where both are known.
  """
  value = module.param(name, init, shape, dtype)
  deferred = _DEFERRING.get()
  if deferred is not None and isinstance(init, _UnitInitializer):
    deferred.paths[('params',) + tuple(module.scope.path) + (name,)] = init
  return value


@contextlib.contextmanager
def _deferring():
  deferred = _Deferred()
  token = _DEFERRING.set(deferred)
  try:
    yield deferred
  finally:
    _DEFERRING.reset(token)


def init_variables(model, key: jax.Array, *args, **kwargs) -> dict[str, Any]:
  """`model.init({'params': key, 'dropout': key}, *args, **kwargs)`, sampled in bulk.

  Meant to run under `jax.jit` (the forward pass on placeholders is dead code there).
  Parameters made by the initialisers of this module are drawn from one unit sample per
  family (derived from `key`); any other variable keeps what `model.init` made.
  """
  with _deferring() as deferred:
    variables = model.init({'params': key, 'dropout': key}, *args, **kwargs)
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(variables))
  missing = sorted('/'.join(p) for p in deferred.paths if p not in flat)
  if missing or len(deferred.paths) != deferred.calls:
    raise RuntimeError(
        f'init_variables: {deferred.calls} parameters were deferred but '
        f'{len(deferred.paths)} recorded ({len(missing)} not in the variables, e.g. '
        f'{missing[:3]}); create parameters of hrnet_jax initialisers with '
        'initializers.param.')
  groups: dict[str, list[tuple[Any, Any, _UnitInitializer]]] = {f: [] for f in _FAMILIES}
  # Sorted paths: the values do not depend on the order modules create them in.
  for path in sorted(deferred.paths):
    init = deferred.paths[path]
    groups[init.family].append((path, flat[path], init))
  for index, family in enumerate(_FAMILIES):
    members = groups[family]
    if not members:
      continue
    sizes = [int(np.prod(leaf.shape)) for _, leaf, _ in members]
    unit = _unit_sample(family, jax.random.fold_in(key, index), (sum(sizes),))
    offset = 0
    for (path, leaf, init), size in zip(members, sizes):
      piece = unit[offset:offset + size].reshape(leaf.shape)
      flat[path] = init.transform(piece, leaf.shape).astype(leaf.dtype)
      offset += size
  return flax.traverse_util.unflatten_dict(flat)

"""Device mesh and shardings for training and evaluation.

One mesh with axes ('data', 'fsdp') spans every device of every process. Batches are
split over both axes (FSDP is data parallel too); parameters and optimizer state are
replicated, or, with `fsdp`, their big leaves are split over the 'fsdp' axis. Under
`jax.jit` with these shardings XLA inserts the collectives itself, which is also what
makes BatchNorm statistics global (SyncBN) without any `pmean`.
"""
from __future__ import annotations

from collections.abc import Mapping
import math
from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

DATA_AXES = ('data', 'fsdp')
# Leaves smaller than this stay replicated under FSDP: splitting a BN scale buys
# nothing and costs a collective.
FSDP_MIN_SIZE = 2**14


def make_mesh(mesh_config: Any = None, *, devices=None) -> Mesh:
  """Mesh ('data', 'fsdp') over all devices; `mesh_config.fsdp` devices per shard."""
  devices = list(jax.devices() if devices is None else devices)
  fsdp = int(getattr(mesh_config, 'fsdp', 1) or 1) if mesh_config is not None else 1
  n = len(devices)
  if fsdp < 1 or n % fsdp:
    raise ValueError(f'config.mesh.fsdp={fsdp} must divide the number of devices ({n}); '
                     f'choose one of {[d for d in range(1, n + 1) if n % d == 0]}.')
  return jax.make_mesh((n // fsdp, fsdp), DATA_AXES,
                       axis_types=(jax.sharding.AxisType.Auto,) * 2, devices=devices)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over all devices of the mesh."""
  return NamedSharding(mesh, P(DATA_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def num_batch_shards(mesh: Mesh) -> int:
  return math.prod(mesh.shape[a] for a in DATA_AXES)


def _fsdp_spec(shape: tuple[int, ...], fsdp_size: int, min_size: int) -> P:
  if fsdp_size <= 1 or not shape or math.prod(shape) < min_size:
    return P()
  # The largest axis that divides evenly: conv kernels (kh, kw, in, out) split on a
  # channel axis, never on the 3x3 window.
  candidates = [(d, i) for i, d in enumerate(shape) if d % fsdp_size == 0]
  if not candidates:
    return P()
  _, axis = max(candidates)
  spec = [None] * len(shape)
  spec[axis] = 'fsdp'
  return P(*spec)


def state_shardings(mesh: Mesh, abstract_state: Any, fsdp: bool | int = False, *,
                    min_size: int = FSDP_MIN_SIZE) -> Any:
  """NamedShardings for a pytree of arrays / ShapeDtypeStructs.

  With `fsdp` true and an 'fsdp' axis larger than one, each leaf of at least
  `min_size` elements is split over 'fsdp' along its largest evenly divisible axis;
  everything else is replicated.
  """
  fsdp_size = mesh.shape['fsdp'] if fsdp else 1

  def one(leaf):
    shape = tuple(getattr(leaf, 'shape', ()))
    return NamedSharding(mesh, _fsdp_spec(shape, fsdp_size, min_size))

  return jax.tree.map(one, abstract_state)


def global_batch(local_batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Per-process numpy batch -> global jax.Arrays split over the mesh's batch axes.

  Every process passes its own slice; the global batch is their concatenation in
  process order.
  """
  sharding = batch_sharding(mesh)
  shards = num_batch_shards(mesh)
  out = {}
  for key, value in local_batch.items():
    value = np.asarray(value)
    if value.ndim == 0:
      raise ValueError(f'batch[{key!r}] is a scalar; every batch entry needs a leading '
                       'batch dimension.')
    global_size = value.shape[0] * jax.process_count()
    if global_size % shards:
      raise ValueError(
          f'global batch size {global_size} (batch[{key!r}] has {value.shape[0]} per '
          f'process x {jax.process_count()} processes) is not divisible by the {shards} '
          f"devices on the mesh axes {DATA_AXES}; set the batch size to a multiple of "
          f'{shards}.')
    global_shape = (global_size,) + value.shape[1:]
    out[key] = jax.make_array_from_process_local_data(sharding, value, global_shape)
  return out

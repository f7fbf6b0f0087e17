"""Starting JAX's multi-process runtime when the environment asks for it.

Call `maybe_initialize` before anything touches a device. It initialises when:
  * a coordinator address, process count and id are given (flags, or the environment
    variables JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID);
  * the process runs on a multi-host TPU slice or under SLURM / Open MPI with more
    than one task (JAX detects these clusters itself).
A single process with none of these runs without it.
"""
from __future__ import annotations

import os

from absl import logging

_CLUSTER_ENV = (
    ('TPU_WORKER_HOSTNAMES', lambda v: ',' in v),          # multi-host TPU VM slice
    ('MEGASCALE_COORDINATOR_ADDRESS', bool),                # multi-slice TPU
    ('SLURM_NTASKS', lambda v: v.isdigit() and int(v) > 1),
    ('OMPI_COMM_WORLD_SIZE', lambda v: v.isdigit() and int(v) > 1),
)


def _cluster_detected() -> bool:
  return any(name in os.environ and test(os.environ[name]) for name, test in _CLUSTER_ENV)


def maybe_initialize(*, coordinator_address: str | None = None,
                     num_processes: int | None = None,
                     process_id: int | None = None) -> bool:
  """Initialises jax.distributed if asked to; returns whether it did."""
  import jax  # pylint: disable=g-import-not-at-top

  coordinator_address = coordinator_address or os.environ.get('JAX_COORDINATOR_ADDRESS')
  if num_processes is None and os.environ.get('JAX_NUM_PROCESSES'):
    num_processes = int(os.environ['JAX_NUM_PROCESSES'])
  if process_id is None and os.environ.get('JAX_PROCESS_ID'):
    process_id = int(os.environ['JAX_PROCESS_ID'])
  explicit = coordinator_address is not None
  if explicit and (num_processes is None or process_id is None):
    raise ValueError('a coordinator address needs --num_processes and --process_id (or '
                     'JAX_NUM_PROCESSES and JAX_PROCESS_ID) too.')
  if not explicit and not _cluster_detected():
    return False
  if jax.config.jax_platforms in ('cpu',) or os.environ.get('JAX_PLATFORMS') == 'cpu':
    # CPU devices of several processes talk through gloo.
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  if explicit:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
  else:
    jax.distributed.initialize()
  logging.info('jax.distributed: process %d of %d.', jax.process_index(),
               jax.process_count())
  return True

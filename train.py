r"""Trains an HRNet recipe: `python train.py --config=configs/quickstart.py --workdir=DIR`.

Override any config field on the command line (`--config.num_train_steps=1000`); a
mistyped field fails. Restarting the same command in the same workdir resumes.

Multi-host: each process runs the same command. On TPU pods and SLURM nothing else is
needed; elsewhere pass --coordinator_address=HOST:PORT --num_processes=N --process_id=I
(or set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID).
"""
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

# `from configs import default` inside config files needs the repository root.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Training configuration file.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Checkpoints, logs and pictures go here.')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None, 'host:port of process 0, for multi-process runs.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Number of processes.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'Index of this process.')
_CPU_DEVICES = flags.DEFINE_integer(
    'cpu_devices', None, 'Simulate this many CPU devices (testing sharding on a CPU).')
flags.mark_flags_as_required(['config', 'workdir'])


def _parse_flags(argv):
  """absl flag parsing, with a bad config override reported in one line, not a trace."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    sys.exit(f'error: {e}')
  except (AttributeError, KeyError) as e:
    # ml_collections: AttributeError(KeyError("'lernrate'\nDid you mean ...?")).
    inner = e.args[0] if e.args and isinstance(e.args[0], BaseException) else e
    lines = str(inner.args[0] if inner.args else inner).splitlines() or ['?']
    key = lines[0].strip('\'" ')
    culprit = next((a.split('=')[0] for a in argv[1:]
                    if a.startswith('--config.') and key in a.split('=')[0].split('.')),
                   f'--config...{key}')
    hint = ' '.join(l.strip() for l in lines[1:])
    sys.exit(f'error: {culprit}: the config has no field {key!r}. {hint}'.rstrip())


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  if _CPU_DEVICES.value:
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                               f' --xla_force_host_platform_device_count={_CPU_DEVICES.value}')
  # Imported here: the distributed runtime must start before JAX touches a device.
  from hrnet_jax.training import distributed  # pylint: disable=g-import-not-at-top
  distributed.maybe_initialize(coordinator_address=_COORDINATOR.value,
                               num_processes=_NUM_PROCESSES.value,
                               process_id=_PROCESS_ID.value)
  from hrnet_jax.training import trainer  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_index() != 0:
    logging.set_verbosity(logging.WARNING)
  logging.info('JAX %s: %d processes, %d devices (%d local): %s', jax.__version__,
               jax.process_count(), jax.device_count(), jax.local_device_count(),
               jax.devices()[0].device_kind)
  try:
    trainer.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except trainer.NonFiniteLossError as e:
    logging.error('%s', e)
    sys.exit(f'error: {e}')


if __name__ == '__main__':
  app.run(main, flags_parser=_parse_flags)

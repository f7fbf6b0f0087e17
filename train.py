r"""Trains an HRNet recipe: `python train.py --config=configs/quickstart.py --workdir=DIR`.

Override any config field on the command line (`--config.num_train_steps=1000`); a
mistyped field or a bad value fails at once, in one line naming the field (every field
is checked before any work). Restarting the same command in the same workdir resumes
from the newest readable checkpoint; a workdir refuses a restart with another model,
head, class count or dataset. SIGTERM and Ctrl-C write a checkpoint and stop (exit 0).
Errors are one line on stderr; `--debug` (or HRNET_DEBUG=1) shows the traceback.

Multi-host: each process runs the same command. On TPU pods and SLURM nothing else is
needed; elsewhere pass --coordinator_address=HOST:PORT --num_processes=N --process_id=I
(or set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID).
"""
import os
import sys

from absl import flags
from ml_collections import config_flags

# `from configs import default` inside config files needs the repository root.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hrnet_jax import cli  # pylint: disable=g-import-not-at-top,wrong-import-position

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Training configuration file.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Checkpoints, logs and pictures go here.')
cli.define_flags(multihost=True)
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise cli.app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  from hrnet_jax import config_validation  # pylint: disable=g-import-not-at-top
  config = config_validation.validate(_CONFIG.value, mode='train')
  # The distributed runtime must start before JAX touches a device.
  cli.start_distributed()
  import jax  # pylint: disable=g-import-not-at-top
  config_validation.validate_topology(config, device_count=jax.device_count(),
                                      process_count=jax.process_count())
  cli.writable_dir(_WORKDIR.value, '--workdir')
  from hrnet_jax import checkpointing  # pylint: disable=g-import-not-at-top
  checkpointing.check_workdir_config(config, _WORKDIR.value)
  from hrnet_jax.training import trainer  # pylint: disable=g-import-not-at-top
  trainer.train_and_evaluate(config, _WORKDIR.value)


if __name__ == '__main__':
  cli.run(main)

"""Checkpoints: model directories and training workdirs.

Two layouts, both readable by `load_model`:

* A model directory (written by `save_model`: the converter, export, the end of
  training)::

      DIR/metadata.json      model, head, num_classes, options, source[, dataset]
      DIR/variables/         Orbax pytree {'params', 'batch_stats'}

* A training workdir (written by `TrainCheckpointManager`)::

      WORKDIR/config.json                   the accepted config of the run
      WORKDIR/checkpoints/<step>/{state,data_state,config,metadata}   the last K
      WORKDIR/best/<step>/...               the best by the task's score

  `state` holds step, params, batch_stats, opt_state and rng; `data_state` the data
  iterator state (JSON, written once: it is a function of seed and step, the same on
  every process, so a run may resume on another process count); `config` the run's
  config (JSON); `metadata` the same model metadata as a model directory. Workdirs
  written before the data state was stored once (one copy per process) still restore.

Every step directory is listed and read through an Orbax CheckpointManager, so steps
whose save was not finalized (`*.orbax-checkpoint-tmp*`) are never seen. A step that
cannot be read is reported in one line and the newest readable one is used instead;
the trainer moves the bad one aside (`<step>.unreadable`), nothing is deleted.

Modules: `store` (the only one that touches Orbax: the training CheckpointManager and
model-directory I/O), `model_files` (load_model / save_model), `workdir_config` (the
restart guard), `preemption` (SIGTERM/SIGINT to a save step every process agrees on),
`metadata` and `errors` (one-line errors, Orbax's log noise filtered).
"""
from hrnet_jax.checkpointing.errors import (CheckpointError, CheckpointSaveError,
                                            WorkdirConfigError, describe_error)
from hrnet_jax.checkpointing.metadata import (METADATA_FILE, REQUIRED_METADATA, VARIABLES_DIR,
                                              check_metadata)
from hrnet_jax.checkpointing.model_files import load_model, save_model
from hrnet_jax.checkpointing.store import (BEST_DIR, CHECKPOINTS_DIR, TrainCheckpointManager,
                                           open_read_only)
from hrnet_jax.checkpointing.workdir_config import CONFIG_FILE, check_workdir_config

__all__ = ['BEST_DIR', 'CHECKPOINTS_DIR', 'CONFIG_FILE', 'METADATA_FILE', 'REQUIRED_METADATA',
           'VARIABLES_DIR', 'CheckpointError', 'CheckpointSaveError', 'TrainCheckpointManager',
           'WorkdirConfigError', 'check_metadata', 'check_workdir_config', 'describe_error',
           'load_model', 'open_read_only', 'save_model']

"""Training: one loop for every task.

`trainer.train_and_evaluate(config, workdir)` builds the model (`hrnet_jax.models`), the
task plug-in named by the config (`hrnet_jax.tasks`), the data loaders (`hrnet_jax.data`)
and the optimizer (`optim`), then runs the jitted step (`step`) on a device mesh
(`sharding`), evaluates periodically (`hrnet_jax.evaluation`), reports to TensorBoard
(`reporting`, CLU) and checkpoints (`hrnet_jax.checkpointing`). `distributed` starts the
multi-process runtime before anything touches a device. Nothing here knows which task
it trains: the loss, the metrics, the best-checkpoint score and the pictures come from
the task.

    from hrnet_jax.training import trainer
    state = trainer.train_and_evaluate(config, '/tmp/workdir')

Submodules are imported on first use (`hrnet_jax.training.trainer` imports JAX).
"""

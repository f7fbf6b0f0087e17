"""`train_and_evaluate(config, workdir)`: the training loop of every recipe.

A run in a workdir that already holds checkpoints resumes from the latest one (state,
optimizer, RNG and data iterator), so restarting the same command after a crash or a
preemption continues where it stopped. SIGTERM or Ctrl-C writes a checkpoint at the current
step and returns normally (train.py then exits 0). A non-finite loss stops the run
with an error naming the step; the step that produced it is not applied and no
checkpoint is written after it.

The trainer knows no task: the task plug-in (`hrnet_jax.tasks`, named by `config.task`
or by the dataset) gives the loaders their transforms, the step its loss, the
evaluation its evaluator, and picks the best checkpoint's score and the pictures.
Reporting is CLU's: a default metric writer (TensorBoard and the log on process 0, the
log alone elsewhere), `ReportProgress` for steps/s and ETA, `Profile` for a trace when
`config.profile_steps` > 0.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

import hrnet_jax
from hrnet_jax import checkpointing
from hrnet_jax import data as data_lib
from hrnet_jax import tasks as tasks_lib
from hrnet_jax.evaluation import evaluator as evaluate_lib
from hrnet_jax.training import optim
from hrnet_jax.training import reporting
from hrnet_jax.training import sharding
from hrnet_jax.training import step as ts
from hrnet_jax.models import model_options_dict


class NonFiniteLossError(FloatingPointError):
  """The loss or the gradients became NaN/inf."""


def build_model(config, *, dtype=None):
  m = config.model
  return hrnet_jax.create_model(
      m.name, head=m.head, num_classes=m.num_classes,
      dtype=jnp.dtype(dtype or m.dtype), param_dtype=jnp.dtype(m.param_dtype),
      upsample=m.upsample, align_corners=m.align_corners, bn_momentum=m.bn_momentum,
      remat=bool(m.remat))


def model_metadata(model, config) -> dict[str, Any]:
  """The metadata of checkpointing.save_model: what create_model needs to rebuild it."""
  return dict(model=config.model.name, head=config.model.head,
              num_classes=int(config.model.num_classes), options=model_options_dict(model),
              source=f'hrnet_jax training ({config.data.name})', dataset=config.data.name)


def _check_config(config) -> None:
  n = jax.device_count()
  if config.global_batch_size % jax.process_count():
    raise ValueError(f'config.global_batch_size={config.global_batch_size} must be '
                     f'divisible by the {jax.process_count()} processes.')
  micro = config.global_batch_size // max(int(config.grad_accum_steps), 1)
  if config.global_batch_size % max(int(config.grad_accum_steps), 1) or micro % n:
    raise ValueError(
        f'config.global_batch_size={config.global_batch_size} / config.grad_accum_steps='
        f'{config.grad_accum_steps} must be a multiple of the {n} devices.')


def _init_from_checkpoint(state, config):
  path = config.init_checkpoint
  variables, meta = checkpointing.load_model(path)
  if meta.get('model') != config.model.name:
    raise ValueError(f'init_checkpoint {path} holds {meta.get("model")!r} but '
                     f'config.model.name is {config.model.name!r}.')
  state, report = ts.merge_pretrained(state, variables, source=path)
  ts.log_init_report(report, path)
  return state


def _evaluate(task, model, state, config, mesh, writer, workdir, step) -> dict[str, Any]:
  loader = data_lib.make_eval_loader(config, process_index=jax.process_index(),
                                     process_count=jax.process_count(), task=task)
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  result = evaluate_lib.evaluate(model, variables, loader, config=config, mesh=mesh,
                                 task=task)
  writer.write_scalars(step, reporting.scalars_of(result, 'eval'))
  reporting.write_pictures(writer, workdir, step, task.picture(result, config))
  result['score'] = task.score(result)
  logging.info('Evaluation at step %d: %s %.4f', step, task.score_name, result['score'])
  return result


def train_and_evaluate(config, workdir: str, *,
                       step_callback: Callable[[int], None] | None = None,
                       task: tasks_lib.Task | str | None = None):
  """Trains per `config` in `workdir` (resuming if it holds checkpoints); the final state.

  `task` (a Task or its name) overrides the config's task (`config.task`, else the
  dataset's). `step_callback(step)` runs on the host after each step is dispatched
  (tests use it to deliver signals at a known step).
  """
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  reporting.quiet_library_logs()
  task = tasks_lib.task_for_config(config) if task is None else tasks_lib.get_task(task)
  task.check_config(config)
  _check_config(config)
  # Refuses a restart with another model/head/classes/dataset before writing anything.
  checkpointing.check_workdir_config(config, workdir)
  mesh = sharding.make_mesh(config.mesh)
  model = build_model(config)
  tx, schedule = optim.make_optimizer(config.optimizer, config.num_train_steps,
                                      head=config.model.head)
  # A restart restores into the abstract state and never compiles the initialiser.
  abstract, shardings = ts.sharded_abstract_state(model, tx, seed=config.seed, mesh=mesh,
                                                  fsdp=config.mesh.fsdp > 1)
  optim.log_groups(abstract.params, config.optimizer, head=config.model.head)
  metadata = model_metadata(model, config)
  ckpt = checkpointing.TrainCheckpointManager(
      workdir, every_steps=config.checkpoint.every_steps, keep=config.checkpoint.keep,
      keep_best=config.checkpoint.keep_best,
      async_save=config.checkpoint.get('async_save', True), watch_signals=True)
  loader = data_lib.make_train_loader(config, process_index=jax.process_index(),
                                      process_count=jax.process_count(), task=task)
  if ckpt.latest_step() is not None:
    state, data_state, restored_step = ckpt.restore_latest_readable(abstract)
    loader.set_state(data_state)
    logging.info('Resumed from %s/checkpoints step %d.', workdir, restored_step)
  else:
    state = ts.init_state(model, tx, seed=config.seed, shardings=shardings)
    if config.init_checkpoint:
      state = _init_from_checkpoint(state, config)
    else:
      logging.info('Random initialisation (no init_checkpoint).')

  loss_fn = ts.make_loss_fn(model, task.make_loss(model, config))
  grad_fn = ts.make_grad_fn(loss_fn, int(config.grad_accum_steps))
  step_fn = ts.jit_train_step(ts.make_train_step(grad_fn, tx, schedule), mesh, shardings)

  writer = reporting.create_writer(workdir)
  writer.write_hparams(reporting.hparams_of(config))
  step = int(jax.device_get(state.step))
  total = int(config.num_train_steps)
  hooks = reporting.progress_hooks(config, workdir, writer)

  def save(force=False):
    return ckpt.save(step, state, data_state=loader.get_state(), config=config,
                     metadata=metadata, force=force)

  def check_finite(at_step, metrics):
    if not bool(jax.device_get(metrics['finite'])):
      ckpt.wait()
      last = ckpt.latest_step()
      raise NonFiniteLossError(
          f'non-finite loss ({float(jax.device_get(metrics["loss"]))}) or gradient at step '
          f'{at_step}; stopping. The last good checkpoint is step {last} in '
          f'{workdir}/checkpoints (lower the learning rate or check the data).')

  pending = None        # (step, metrics) not yet checked for finiteness
  window_losses = []    # device scalars of the steps since the last log line
  try:
    while step < total:
      batch = sharding.global_batch(next(loader), mesh)
      state, metrics = step_fn(state, batch)
      step += 1
      if pending is not None:   # one step behind: the host never stalls the device
        check_finite(*pending)
      pending = (step, metrics)
      window_losses.append(metrics['loss'])
      if step_callback is not None:
        step_callback(step)
      for hook in hooks:
        hook(step)
      if step % config.log_every_steps == 0 or step == total:
        check_finite(*pending)
        # The loss averaged over the window (every step since the last line), the rest
        # as of this step.
        writer.write_scalars(step, {
            'train/loss': float(np.mean(jax.device_get(window_losses))),
            'train/lr': float(metrics['lr']), 'train/grad_norm': float(metrics['grad_norm'])})
        window_losses = []
      # Orbax's interval, or the step all processes agreed on after SIGTERM/SIGINT;
      # raises CheckpointSaveError when an earlier (asynchronous) save failed.
      checkpoint_due = ckpt.should_save(step)
      eval_due = config.eval.every_steps > 0 and step % config.eval.every_steps == 0
      if checkpoint_due or eval_due or step == total:
        check_finite(*pending)
      if checkpoint_due:
        save(force=True)
      if eval_due and step < total:
        with hooks[0].timed('eval', wait_jax_async_dispatch=False):
          result = _evaluate(task, model, state, config, mesh, writer, workdir, step)
        ckpt.save_best(step, state, result['score'], data_state=loader.get_state(),
                       config=config, metadata=metadata)
      if ckpt.reached_preemption(step) and step < total:
        check_finite(*pending)
        save(force=True)
        ckpt.wait()
        logging.warning('%s at step %d: checkpoint written to %s/checkpoints; run the '
                        'same command to resume.', ckpt.preemption_signal, step, workdir)
        return state
    if pending is not None:
      check_finite(*pending)
    save(force=True)
    if config.eval.every_steps >= 0:
      result = _evaluate(task, model, state, config, mesh, writer, workdir, step)
      ckpt.save_best(step, state, result['score'], data_state=loader.get_state(),
                     config=config, metadata=metadata)
      if jax.process_index() == 0:
        summary = {k: v for k, v in reporting.scalars_of(result, 'eval').items()}
        with open(os.path.join(workdir, 'final_metrics.json'), 'w') as f:
          json.dump(dict(summary, step=step), f, indent=2)
    ckpt.wait()
    return state
  finally:
    writer.flush()
    ckpt.close()
    if hasattr(loader, 'close'):
      loader.close()   # stops grain's worker processes and frees their shared memory

"""`train_and_evaluate(config, workdir)`: the training loop of every recipe.

A run in a workdir that already holds checkpoints resumes from the latest one (state,
optimizer, RNG and data iterator), so restarting the same command after a crash or a
preemption continues where it stopped. SIGTERM writes a checkpoint at the current
step and returns normally (train.py then exits 0). A non-finite loss stops the run
with an error naming the step; the step that produced it is not applied and no
checkpoint is written after it.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from typing import Any, Callable

from absl import logging
import jax
import jax.numpy as jnp

import hrnet_jax
from hrnet_jax import checkpointing
from hrnet_jax import data as data_lib
from hrnet_jax import evaluate as evaluate_lib
from hrnet_jax import optim
from hrnet_jax import reporting
from hrnet_jax import sharding
from hrnet_jax import train_step as ts
from hrnet_jax.models import model_options_dict


class NonFiniteLossError(FloatingPointError):
  """The loss or the gradients became NaN/inf."""


class _Preemption:
  """Turns SIGTERM into a flag the loop polls; all processes agree on the stop step."""

  def __init__(self):
    self.requested = False
    self._previous = None
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def reached(self, step: int) -> bool:
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      try:
        return multihost_utils.reached_preemption_sync_point(step) or self.requested
      except (RuntimeError, ValueError):
        pass
    return self.requested

  def restore(self):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


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
  if config.model.head not in ('seg', 'ocr', 'cls'):
    raise ValueError(f"config.model.head={config.model.head!r}: training supports 'seg', "
                     "'ocr' and 'cls'.")


def _init_from_checkpoint(state, config):
  path = config.init_checkpoint
  variables, meta = checkpointing.load_model(path)
  if meta.get('model') != config.model.name:
    raise ValueError(f'init_checkpoint {path} holds {meta.get("model")!r} but '
                     f'config.model.name is {config.model.name!r}.')
  state, report = ts.merge_pretrained(state, variables, source=path)
  ts.log_init_report(report, path)
  return state


def _evaluate(model, state, config, mesh, writer, workdir, step) -> dict[str, Any]:
  loader = data_lib.make_eval_loader(config, process_index=jax.process_index(),
                                     process_count=jax.process_count())
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  result = evaluate_lib.evaluate(model, variables, loader, config=config, mesh=mesh)
  writer.write_scalars(step, reporting.scalars_of(result, 'eval'))
  if config.model.head != 'cls':
    picture = reporting.evaluation_picture(
        result.get('pictures', []), dataset=config.data.name,
        num_classes=int(config.model.num_classes), ignore_label=int(config.data.ignore_label))
    reporting.write_pictures(writer, workdir, step, picture)
  score_key = 'top1' if config.model.head == 'cls' else 'mIoU'
  result['score'] = float(result[score_key])
  logging.info('Evaluation at step %d: %s %.4f', step, score_key, result['score'])
  if 'per_class_iou' in result:
    names = data_lib.get_dataset_info(config.data.name).class_names
    present = result.get('present', [True] * len(names))
    logging.info('  IoU: %s', ', '.join(
        f'{n} {v:.3f}' for n, v, p in zip(names, result['per_class_iou'], present) if p))
  return result


def _write_config(workdir: str, config) -> None:
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=2))


def train_and_evaluate(config, workdir: str, *,
                       step_callback: Callable[[int], None] | None = None):
  """Trains per `config` in `workdir` (resuming if it holds checkpoints); the final state.

  `step_callback(step)` runs on the host after each step is dispatched (tests use it
  to deliver signals at a known step).
  """
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  reporting.quiet_library_logs()
  _check_config(config)
  _write_config(workdir, config)
  mesh = sharding.make_mesh(config.mesh)
  model = build_model(config)
  tx, schedule = optim.make_optimizer(config.optimizer, config.num_train_steps)
  state, shardings = ts.create_state(model, tx, seed=config.seed, mesh=mesh,
                                     fsdp=config.mesh.fsdp > 1)
  metadata = model_metadata(model, config)
  ckpt = checkpointing.TrainCheckpointManager(
      workdir, every_steps=config.checkpoint.every_steps, keep=config.checkpoint.keep,
      keep_best=config.checkpoint.keep_best,
      async_save=config.checkpoint.get('async_save', True))
  loader = data_lib.make_train_loader(config, process_index=jax.process_index(),
                                      process_count=jax.process_count())
  if ckpt.latest_step() is not None:
    abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                            state, shardings)
    state, data_state, restored_step = ckpt.restore(abstract)
    loader.set_state(data_state)
    logging.info('Resumed from %s/checkpoints step %d.', workdir, restored_step)
  elif config.init_checkpoint:
    state = _init_from_checkpoint(state, config)
  else:
    logging.info('Random initialisation (no init_checkpoint).')

  align_corners = evaluate_lib.resolve_align_corners(model.opts, config)
  loss_fn = ts.make_loss_fn(model, config, align_corners=align_corners)
  grad_fn = ts.make_grad_fn(loss_fn, int(config.grad_accum_steps))
  step_fn = ts.jit_train_step(ts.make_train_step(grad_fn, tx, schedule), mesh, shardings)

  writer = reporting.create_writer(workdir)
  step = int(jax.device_get(state.step))
  total = int(config.num_train_steps)
  progress = reporting.Progress(total_steps=total, start_step=step,
                                images_per_step=config.global_batch_size,
                                every_steps=config.log_every_steps)
  preemption = _Preemption()

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
  window_start, window_step = time.time(), step
  try:
    while step < total:
      batch = sharding.global_batch(next(loader), mesh)
      state, metrics = step_fn(state, batch)
      step += 1
      if pending is not None:   # one step behind: the host never stalls the device
        check_finite(*pending)
      pending = (step, metrics)
      if step_callback is not None:
        step_callback(step)
      progress.update(step, metrics)
      if step % config.log_every_steps == 0 or step == total:
        check_finite(*pending)
        now = time.time()
        step_time = (now - window_start) / max(step - window_step, 1)
        window_start, window_step = now, step
        writer.write_scalars(step, {
            'train/loss': float(metrics['loss']), 'train/lr': float(metrics['lr']),
            'train/grad_norm': float(metrics['grad_norm']),
            'train/step_time_s': step_time,
            'train/images_per_s': config.global_batch_size / max(step_time, 1e-9)})
      checkpoint_due = config.checkpoint.every_steps > 0 and (
          step % config.checkpoint.every_steps == 0)
      eval_due = config.eval.every_steps > 0 and step % config.eval.every_steps == 0
      if checkpoint_due or eval_due or step == total:
        check_finite(*pending)
      if checkpoint_due:
        save()
      if eval_due and step < total:
        result = _evaluate(model, state, config, mesh, writer, workdir, step)
        ckpt.save_best(step, state, result['score'], data_state=loader.get_state(),
                       config=config, metadata=metadata)
      if preemption.reached(step) and step < total:
        check_finite(*pending)
        save(force=True)
        ckpt.wait()
        logging.info('SIGTERM at step %d: checkpoint written to %s/checkpoints; run the '
                     'same command to resume.', step, workdir)
        return state
    if pending is not None:
      check_finite(*pending)
    save(force=True)
    progress.close()
    if config.eval.every_steps >= 0:
      result = _evaluate(model, state, config, mesh, writer, workdir, step)
      ckpt.save_best(step, state, result['score'], data_state=loader.get_state(),
                     config=config, metadata=metadata)
      if jax.process_index() == 0:
        summary = {k: v for k, v in reporting.scalars_of(result, 'eval').items()}
        with open(os.path.join(workdir, 'final_metrics.json'), 'w') as f:
          json.dump(dict(summary, step=step), f, indent=2)
    ckpt.wait()
    return state
  finally:
    preemption.restore()
    writer.flush()
    ckpt.close()
    if hasattr(loader, 'close'):
      loader.close()   # stops grain's worker processes and frees their shared memory

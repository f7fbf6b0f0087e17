"""Evaluation over a padded eval loader: exact metrics on any number of devices and hosts.

`evaluate` is what training calls periodically and what `eval.py` runs. Every process
feeds its own per-process batches (the eval loader pads them and marks the padding
with `mask`, so all processes run the same number of steps) to the evaluator of the
config's task (`hrnet_jax.tasks`), which runs its jitted step on the global batch split
over every device and accumulates what its metrics need, reduced over all devices and
hosts before it reaches any host. This loop only counts examples, keeps a few pictures
from process 0 and hands every batch's predictions to `on_batch` (submission files).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
import time
from typing import Any

from absl import logging
import jax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from hrnet_jax import tasks as tasks_lib
from hrnet_jax.evaluation import metrics

BatchCallback = Callable[[Mapping[str, np.ndarray], np.ndarray], None]


class EmptyDatasetError(ValueError):
  """The evaluation loader produced no (unpadded) example."""


def batch_mask(batch: Mapping[str, Any]) -> np.ndarray:
  """(b,) bool: which rows of a process-local batch are real examples."""
  return np.asarray(batch.get('mask', np.ones(len(batch['image']), bool)), bool)


def true_sizes(batch: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
  """(heights, widths) of the examples before padding (the padded size when absent)."""
  n, h, w = np.shape(batch['image'])[:3]
  return (np.asarray(batch.get('height', np.full(n, h))),
          np.asarray(batch.get('width', np.full(n, w))))


def to_global(local: np.ndarray, mesh: Mesh) -> jax.Array:
  """A per-process batch -> the global array split over the mesh's batch axes."""
  axes = metrics.batch_axes(mesh)
  shards = int(np.prod([mesh.shape[a] for a in axes]))
  local = np.asarray(local)
  global_size = local.shape[0] * jax.process_count()
  if global_size % shards:
    raise ValueError(
        f'eval batch of {local.shape[0]} per process x {jax.process_count()} processes is '
        f'not divisible by the {shards} devices; set config.eval.global_batch_size to a '
        f'multiple of {shards}.')
  sharding = NamedSharding(mesh, P(axes))
  return jax.make_array_from_process_local_data(sharding, local,
                                                (global_size,) + local.shape[1:])


def local_rows(x: jax.Array, mesh: Mesh) -> np.ndarray:
  """This process's rows of a batch-sharded global array, in process-local order."""
  if not isinstance(x, jax.Array):
    return np.asarray(x)
  local = multihost_utils.global_array_to_host_local_array(x, mesh,
                                                           P(metrics.batch_axes(mesh)))
  return np.asarray(local)


def _check_batch(batch: Mapping[str, Any]) -> None:
  if 'image' not in batch:
    raise KeyError(f'eval batch lacks image; the eval loader yields image, mask and the '
                   f"task's entries (it has {sorted(batch)}).")
  image = np.asarray(batch['image'])
  if image.ndim != 4 or image.shape[-1] != 3 or image.dtype != np.uint8:
    raise ValueError(f"batch['image'] must be uint8 (b, H, W, 3), got {image.dtype} "
                     f'{image.shape}.')


def evaluate(model, variables, eval_loader: Iterable[Mapping[str, np.ndarray]], *,
             config, mesh: Mesh, protocol: Any = None, on_batch: BatchCallback | None = None,
             task: tasks_lib.Task | str | None = None) -> dict[str, Any]:
  """Runs the task's evaluation over `eval_loader`; returns its metrics.

  The task is `task` (a Task or its name), else the config's (`config.task` or the
  dataset's). Its metrics (segmentation: mIoU, per_class_iou, pixel_accuracy,
  mean_accuracy, present, confusion_matrix; classification: top1, top5) come with
  `num_examples`, `seconds` and `pictures`: up to `config.eval.num_pictures` examples
  of process 0 as the task's evaluator shows them (segmentation: (image, label,
  prediction) at the true size). `on_batch(local_batch, local_predictions)` is called
  on every process for every batch (submission files); predictions are padded like
  the batch. `protocol` overrides the test protocol of `config.eval` (segmentation).
  """
  task = tasks_lib.task_for_config(config) if task is None else tasks_lib.get_task(task)
  task_eval = task.make_evaluator(model, variables, config=config, mesh=mesh,
                                  protocol=protocol)
  num_pictures = int(config.eval.get('num_pictures', 0))
  pictures: list[Any] = []
  local_count = 0
  num_batches = 0
  start = time.time()
  for batch in eval_loader:
    _check_batch(batch)
    mask = batch_mask(batch)
    outputs = task_eval.update(batch)
    local_count += int(mask.sum())
    want_pictures = jax.process_index() == 0 and len(pictures) < num_pictures
    if want_pictures or on_batch is not None:
      predictions = task_eval.local_predictions(outputs)
      if on_batch is not None:
        on_batch(batch, predictions)
      for i in np.flatnonzero(mask)[:max(num_pictures - len(pictures), 0)]:
        if want_pictures:
          pictures.append(task_eval.picture(batch, predictions, int(i)))
    num_batches += 1
  num_examples = int(metrics.sum_over_processes(np.array([local_count]))[0])
  if num_examples == 0:
    raise EmptyDatasetError(
        f'the evaluation set is empty ({num_batches} batches, 0 unpadded examples): check '
        f'config.data.name={config.data.name!r}, eval_split={config.data.eval_split!r}, '
        f'data_dir and max_eval_examples.')
  out = task_eval.result()
  seconds = time.time() - start
  out.update(num_examples=num_examples, pictures=pictures, seconds=seconds)
  logging.info('Evaluated %d examples in %.1f s: %s', num_examples, seconds,
               task.summary(out, config))
  return out

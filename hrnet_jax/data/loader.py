"""Deterministic, resumable, multi-process input pipelines (grain over `tfds.data_source`).

Training order. Epoch e is the permutation `default_rng([_SHUFFLE, seed, e])
.permutation(n)` of the split; global step s of the epoch takes positions [s*B, (s+1)*B)
of it (B = global batch, n // B steps per epoch, the rest dropped as drop_last); process
p of P takes the p-th contiguous slice of b = B / P examples. Example r of epoch e is
augmented with `default_rng([_AUGMENT, seed, e, r])`. Hence the stream is a pure
function of (seed, step): shards are disjoint, the global batches do not depend on the
number of processes or workers, and the iterator state is just the next step, so a
restore (in a new process, with any number of workers) continues with exactly the batch
that would have come next.

Evaluation. Example i of the split goes to global slot i of ceil(n / B) batches; slots
past n are padding with mask False, so every process runs the same number of batches and
each example counts exactly once.

What an example becomes is the task's business (`hrnet_jax.tasks`): the loader opens the
split, computes the order and the random streams, and calls the task's transforms
(`task.train_transform(config, info)`, `task.eval_transform(config, info, source)`) on
each raw example; it adds 'mask' and 'index' to evaluation examples and passes every
other key through. Batching is grain's own (stacking into shared memory when worker
processes run the transforms).
"""
from __future__ import annotations

import math
import os
import sys
from typing import Any

import cv2
import grain
import numpy as np

from hrnet_jax import tasks as tasks_lib
from hrnet_jax.data import sources
from hrnet_jax.data.errors import DataError
from hrnet_jax.data.registry import DatasetInfo, dataset_info

# Leading words that keep the shuffling and augmentation random streams apart.
_SHUFFLE, _AUGMENT = 1, 2
_STATE_VERSION = 1
_INFINITE = sys.maxsize // 4


def _worker_init(worker_index: int, worker_count: int) -> None:
  del worker_index
  # The workers share the host's cores; OpenCV's own threads get what is left per worker.
  cv2.setNumThreads(max(1, (os.cpu_count() or 1) // worker_count))


def _per_process(global_batch: int, process_count: int, what: str) -> int:
  if global_batch <= 0 or global_batch % process_count:
    raise DataError(f'{what}={global_batch} must be a positive multiple of the number of '
                    f'processes ({process_count})')
  return global_batch // process_count


class _TrainExample:
  """Local position -> augmented example (picklable: runs in grain worker processes)."""

  def __init__(self, source, info: DatasetInfo, split: str, transform, *,
               seed: int, batch: int, global_batch: int, process_index: int):
    self.source, self.info, self.split, self.transform = source, info, split, transform
    self.seed, self.batch, self.global_batch = seed, batch, global_batch
    self.process_index = process_index
    self.num_records = len(source)
    self.steps_per_epoch = self.num_records // global_batch
    self._perms: dict[int, np.ndarray] = {}

  def record_at(self, position: int) -> tuple[int, int]:
    """(epoch, record index) of this process's `position`-th training example."""
    epoch, local = divmod(position, self.steps_per_epoch * self.batch)
    step, within = divmod(local, self.batch)
    perm = self._perms.get(epoch)
    if perm is None:
      perm = np.random.default_rng([_SHUFFLE, self.seed, epoch]).permutation(
          self.num_records)
      self._perms = {epoch: perm}    # one epoch at a time is enough and keeps workers small
    return epoch, int(perm[step * self.global_batch + self.process_index * self.batch + within])

  def __call__(self, position: int) -> dict[str, np.ndarray]:
    epoch, record = self.record_at(position)
    rng = np.random.default_rng([_AUGMENT, self.seed, epoch, record])
    example = self.source[record]
    what = sources.example_id(example, self.info, self.split, record)
    return self.transform(example, rng, what)


def _to_iterator(dataset: grain.MapDataset, num_workers: int, num_threads: int = 2):
  if num_workers > 0:
    from absl import flags  # pylint: disable=g-import-not-at-top
    if not flags.FLAGS.is_parsed():
      # grain's worker start-up reads its absl flags; outside absl.app (tests, notebooks)
      # nothing parsed them, so take their defaults.
      flags.FLAGS.mark_as_parsed()
    it_ds = dataset.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=1))
    it_ds = it_ds.mp_prefetch(
        grain.MultiprocessingOptions(num_workers=num_workers, per_worker_buffer_size=1),
        worker_init_fn=_worker_init)
  else:
    it_ds = dataset.to_iter_dataset(
        grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=num_threads))
  return iter(it_ds)


def _closing(iterator):
  """Yields from a grain iterator and stops its threads/processes when done."""
  try:
    yield from iterator
  finally:
    if hasattr(iterator, 'close'):
      iterator.close()


class TrainLoader:
  """Endless iterator of per-process training batches with get_state()/set_state().

  Batches are the task's training examples stacked: segmentation {'image': uint8
  (b, H, W, 3), 'label': int32 (b, H, W)}, classification {'image': uint8 (b, S, S, 3),
  'label': int32 (b,)}.
  """

  def __init__(self, example_fn: _TrainExample, *, num_workers: int, dataset: str):
    self._fn = example_fn
    self._num_workers = num_workers
    self._dataset = dataset
    self._batches = grain.MapDataset.range(0, _INFINITE).map(example_fn).batch(
        example_fn.batch, drop_remainder=True)
    self._step = 0
    self._it = None

  @property
  def steps_per_epoch(self) -> int:
    return self._fn.steps_per_epoch

  @property
  def num_examples(self) -> int:
    return self._fn.num_records

  @property
  def step(self) -> int:
    """The global step of the next batch."""
    return self._step

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._it is None:
      self._it = _to_iterator(self._batches[self._step:], self._num_workers)
    batch = next(self._it)
    self._step += 1
    return self._fn.transform.finish_batch(batch)

  def get_state(self) -> dict[str, Any]:
    """JSON-serialisable state; independent of worker and process counts."""
    fn = self._fn
    return {'version': _STATE_VERSION, 'dataset': self._dataset, 'split': fn.split,
            'seed': fn.seed, 'global_batch_size': fn.global_batch,
            'num_examples': fn.num_records, 'next_step': self._step}

  def set_state(self, state: dict[str, Any]) -> None:
    if isinstance(state, (bytes, str)):
      import json  # pylint: disable=g-import-not-at-top
      state = json.loads(state)
    expected = self.get_state()
    for key in ('version', 'dataset', 'split', 'seed', 'global_batch_size', 'num_examples'):
      if state.get(key) != expected[key]:
        raise DataError(f'data iterator state is for {key}={state.get(key)!r} but this '
                        f'loader has {key}={expected[key]!r}; restore with the same config')
    self.close()
    self._step = int(state['next_step'])

  def close(self) -> None:
    if self._it is not None and hasattr(self._it, 'close'):
      self._it.close()
    self._it = None


def check_class_count(info: DatasetInfo, config) -> None:
  """A folder of the user's own data defines its classes; the model must predict as many
  (more would train silently on classes that never occur, fewer would index past the
  logits). Checked before the folder is built."""
  if info.user_folder is None:
    return
  want = int(config.model.num_classes)
  if want != info.num_classes:
    names = ', '.join(info.class_names[:6]) + (', ...' if len(info.class_names) > 6 else '')
    raise DataError(f'config.model.num_classes={want}, but {info.user_folder.root} defines '
                    f'{info.num_classes} classes ({names}); set '
                    f'--config.model.num_classes={info.num_classes}.')


def make_train_loader(config, *, process_index: int = 0, process_count: int = 1,
                      task: tasks_lib.Task | str | None = None) -> TrainLoader:
  """The training iterator of this process (see the module docstring for the order).

  `task` (a Task or its name) defaults to the config's (`config.task` or the dataset's).
  """
  info = dataset_info(config.data)
  check_class_count(info, config)
  task = tasks_lib.task_for_config(config) if task is None else tasks_lib.get_task(task)
  batch = _per_process(int(config.global_batch_size), process_count, 'global_batch_size')
  source = task.source_view(
      sources.open_split(info, config.data.train_split, data_dir=config.data.data_dir,
                         manual_dir=config.data.manual_dir),
      info, config.data.train_split, config, training=True)
  if len(source) < config.global_batch_size:
    raise DataError(f'{info.name} {config.data.train_split} has {len(source)} examples, '
                    f'fewer than global_batch_size={config.global_batch_size}')
  fn = _TrainExample(source, info, config.data.train_split,
                     task.train_transform(config, info), seed=int(config.seed),
                     batch=batch, global_batch=int(config.global_batch_size),
                     process_index=process_index)
  return TrainLoader(fn, num_workers=int(config.data.num_workers), dataset=info.name)


class _EvalExample:
  """Global slot -> whole (padded) example, or an all-padding example past the split."""

  def __init__(self, source, info: DatasetInfo, split: str, transform, *,
               num_examples: int, batch: int, global_batch: int, process_index: int):
    self.source, self.info, self.split, self.transform = source, info, split, transform
    self.num_examples = num_examples
    self.batch, self.global_batch, self.process_index = batch, global_batch, process_index

  def __call__(self, position: int) -> dict[str, np.ndarray]:
    step, within = divmod(position, self.batch)
    index = step * self.global_batch + self.process_index * self.batch + within
    if index >= self.num_examples:
      return dict(self.transform.padding(), mask=np.bool_(False), index=np.int32(-1))
    example = self.source[index]
    what = sources.example_id(example, self.info, self.split, index)
    return dict(self.transform(example, what), mask=np.bool_(True), index=np.int32(index))


class EvalLoader:
  """Re-iterable evaluation batches; the same `len()` on every process.

  Batches are the task's evaluation examples stacked, plus 'mask': bool (b,) (False =
  padding) and 'index': int32 (b,) example index in the split (-1 = padding).
  Segmentation: {'image': uint8 (b, Hp, Wp, 3), 'label': int32 (b, Hp, Wp) padded with
  ignore_label, 'height', 'width': int32 (b,) true image sizes, 'mask', 'index'}.
  Classification: {'image': uint8 (b, S, S, 3), 'label': int32 (b,), 'mask', 'index'}.
  """

  def __init__(self, example_fn: _EvalExample, num_batches: int, num_workers: int):
    self._fn, self._num_batches, self._num_workers = example_fn, num_batches, num_workers
    self._batches = grain.MapDataset.range(0, num_batches * example_fn.batch).map(
        example_fn).batch(example_fn.batch, drop_remainder=True)

  @property
  def num_examples(self) -> int:
    return self._fn.num_examples

  @property
  def pad_size(self) -> tuple[int, int] | None:
    """The (h, w) every image is padded to, when the task pads (segmentation)."""
    return getattr(self._fn.transform, 'pad_size', None)

  def __len__(self) -> int:
    return self._num_batches

  def __iter__(self):
    # Threads, not processes: decoding and padding release the GIL, and fresh worker
    # processes for every evaluation would cost seconds of start-up each time.
    return _closing(_to_iterator(self._batches, 0, num_threads=max(2, self._num_workers)))


def make_eval_loader(config, *, process_index: int = 0, process_count: int = 1,
                     split: str | None = None,
                     task: tasks_lib.Task | str | None = None) -> EvalLoader:
  """Evaluation batches of this process over the whole split (or max_eval_examples)."""
  info = dataset_info(config.data)
  check_class_count(info, config)
  task = tasks_lib.task_for_config(config) if task is None else tasks_lib.get_task(task)
  split = split or config.data.eval_split
  global_batch = int(config.eval.global_batch_size)
  batch = _per_process(global_batch, process_count, 'eval.global_batch_size')
  source = task.source_view(
      sources.open_split(info, split, data_dir=config.data.data_dir,
                         manual_dir=config.data.manual_dir),
      info, split, config, training=False)
  n = len(source)
  if config.data.max_eval_examples and config.data.max_eval_examples > 0:
    n = min(n, int(config.data.max_eval_examples))
  fn = _EvalExample(source, info, split, task.eval_transform(config, info, source),
                    num_examples=n, batch=batch, global_batch=global_batch,
                    process_index=process_index)
  return EvalLoader(fn, math.ceil(n / global_batch), int(config.data.num_workers))

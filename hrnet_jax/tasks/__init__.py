"""Tasks as plug-ins: what differs between segmentation, classification, keypoints...

A task (`base.Task`) owns everything task-specific: the example -> batch transforms of
training and evaluation (numpy, run in the data-loader workers), the loss on the model's
outputs, the evaluator (accumulator and final metrics, exact over devices and hosts),
the score that picks the best checkpoint, the pictures and the printed report, and the
config fields it reads. The trainer, the step, the evaluator loop and the data loader
call these and know no task. See docs/tasks.md.

    from hrnet_jax import tasks
    task = tasks.get_task('segmentation')        # hrnet_jax.tasks.segmentation.TASK
    task = tasks.task_for_config(config)         # config.task, else the dataset's task

`get_task(name)` imports `hrnet_jax.tasks.<name>` on first use and returns its `TASK`, so
a new task is a new module here and nothing else; a dotted name (`mypkg.mytask`) imports
that module instead, for tasks that live outside the package. Nothing here imports JAX:
data-loader workers unpickle task transforms.
"""
from __future__ import annotations

import importlib
from typing import Any

from hrnet_jax.tasks.base import Task, TaskError

__all__ = ['Task', 'TaskError', 'get_task', 'task_for_config']


def get_task(name: str | Task) -> Task:
  """The plug-in `TASK` of module `hrnet_jax.tasks.<name>` (or of a dotted module path)."""
  if isinstance(name, Task):
    return name
  if not isinstance(name, str) or not name:
    raise TaskError(f'config.task={name!r}: name a task (e.g. segmentation, '
                    'classification) or a module path (mypkg.mytask).')
  module_name = name if '.' in name else f'{__name__}.{name}'
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    if e.name is None or not module_name.startswith(e.name):
      raise   # the task module exists but one of its own imports is missing
    raise TaskError(f'task {name!r}: no module {module_name}; known tasks are modules of '
                    f'hrnet_jax/tasks/ (e.g. segmentation, classification) or a module '
                    'path (mypkg.mytask).') from None
  task = getattr(module, 'TASK', None)
  if not isinstance(task, Task):
    raise TaskError(f'task {name!r}: module {module_name} defines no TASK (an instance of '
                    'hrnet_jax.tasks.Task).')
  return task


def task_for_config(config: Any) -> Task:
  """The task of `config.task`, or when it is unset, of `config.data.name`'s dataset."""
  name = config.get('task', None)
  if not name:
    from hrnet_jax.data import registry  # pylint: disable=g-import-not-at-top
    name = registry.dataset_info(config.data).task
  return get_task(name)

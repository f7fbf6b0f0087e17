"""The task interface: what the trainer, the step, the evaluator and the loader ask of a task.

A task is a subclass of `Task` whose module defines `TASK = MyTask()`. The shared code
calls it at these points (and nowhere else does it know which task it runs):

  data loader (`hrnet_jax.data.loader`, in grain worker processes, numpy only)
    `source_view(source, info, split, config, training=)` -> what the loader indexes:
        the split's random-access source itself (default), or a view of it with
        another length, e.g. one entry per person of a keypoint dataset.
    `train_transform(config, info)` -> a picklable `TrainTransform`:
        transform(raw_example, rng, what) -> dict of numpy arrays (one example);
        transform.finish_batch(batch) -> batch, in the main process after batching.
    `eval_transform(config, info, source)` -> a picklable `EvalTransform`:
        transform(raw_example, what) -> dict of numpy arrays of a fixed shape;
        transform.padding() -> the same structure for a padding slot.
      The loader adds 'mask' (False for padding) and 'index' (position in the split) to
      evaluation examples and passes every other key through, so per-example metadata
      (true size, centre/scale, image id) reaches the evaluator unchanged.
  step (`hrnet_jax.training.step`, inside jit)
    `make_loss(model, config)` -> loss(outputs, batch) -> scalar; `outputs` is what the
      model returns for the normalised batch['image'] in training mode.
  evaluator loop (`hrnet_jax.evaluation.evaluator`)
    `make_evaluator(model, variables, config=, mesh=, protocol=)` -> an `Evaluator`
      whose `update(local_batch)` runs one batch (every process calls it with its own
      batch, the same number of times) and whose `result()` returns the final metrics,
      exact over devices and hosts (counts reduced on device, or predictions gathered
      and scored on the host).
  trainer (`hrnet_jax.training.trainer`) and eval.py
    `score_name`: the result entry (higher is better) that keeps the best checkpoint;
    `summary(result, config)`: one log line; `picture(result, config)`: the RGB picture
    of an evaluation for TensorBoard and WORKDIR/pictures (or None);
    `report(result, config=, workdir=, writer=, step=)`: what eval.py prints and
    writes besides eval_results.json; returns extra entries for that json.
  `config_fields`: the dotted config fields the task reads; `check_config` fails early
    (one line) when one is missing.

This module imports no JAX: the loader's worker processes unpickle task transforms,
which imports the task's module. Keep device code (losses, evaluators) in modules the
task imports inside `make_loss` / `make_evaluator`, as segmentation and classification do.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Protocol

import numpy as np

Batch = Mapping[str, np.ndarray]


class TaskError(ValueError):
  """A task name that names no task, or a config the task cannot run with."""


class TrainTransform(Protocol):
  """Raw dataset example -> one training example (numpy); picklable."""

  def __call__(self, example: Mapping[str, Any], rng: np.random.Generator,
               what: str) -> dict[str, np.ndarray]:
    ...

  def finish_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    ...


class EvalTransform(Protocol):
  """Raw dataset example -> one evaluation example of fixed shape (numpy); picklable."""

  def __call__(self, example: Mapping[str, Any], what: str) -> dict[str, np.ndarray]:
    ...

  def padding(self) -> dict[str, np.ndarray]:
    ...


class Evaluator(Protocol):
  """One evaluation pass of a task: device steps, accumulated state, final metrics."""

  def update(self, batch: Batch) -> Any:
    """Runs one process-local batch (padded; batch['mask'] marks real examples).

    Returns the batch's outputs in any form `local_predictions` understands; the loop
    only converts them when it needs host predictions (pictures, submission files), so
    the device is never waited for otherwise.
    """

  def local_predictions(self, outputs: Any) -> np.ndarray:
    """This process's rows of the predictions of `update`'s outputs, as numpy."""

  def picture(self, batch: Batch, predictions: np.ndarray, i: int) -> Any:
    """What `Task.picture` and `Task.report` need of example i (numpy, unpadded)."""

  def result(self) -> dict[str, Any]:
    """The metrics over every example of every process (call once, on every process)."""


class Task:
  """Base class of task plug-ins; see the module docstring for who calls what."""

  name: str = ''
  config_fields: tuple[str, ...] = ()
  score_name: str = ''

  def check_config(self, config: Any) -> None:
    """Fails in one line when a field this task reads is missing from the config."""
    for field in self.config_fields:
      node = config
      for part in field.split('.'):
        if part not in node:
          raise TaskError(f'task {self.name!r} reads config.{field}, which the config '
                          'lacks; start from configs/default.py.')
        node = node[part]

  # --- data (numpy, grain workers) -------------------------------------------------
  def source_view(self, source: Any, info: Any, split: str, config: Any, *,
                  training: bool) -> Any:
    """The random-access sequence of raw examples the loader orders and shards."""
    del info, split, config, training
    return source

  def train_transform(self, config: Any, info: Any) -> TrainTransform:
    raise NotImplementedError(f'task {self.name!r} has no training transform.')

  def eval_transform(self, config: Any, info: Any, source: Any) -> EvalTransform:
    raise NotImplementedError(f'task {self.name!r} has no evaluation transform.')

  # --- device ------------------------------------------------------------------------
  def make_loss(self, model: Any, config: Any) -> Callable[[Any, Batch], Any]:
    raise NotImplementedError(f'task {self.name!r} has no loss.')

  def make_evaluator(self, model: Any, variables: Any, *, config: Any, mesh: Any,
                     protocol: Any = None) -> Evaluator:
    raise NotImplementedError(f'task {self.name!r} has no evaluator.')

  # --- results -----------------------------------------------------------------------
  def score(self, result: Mapping[str, Any]) -> float:
    """The number that picks the best checkpoint (higher is better)."""
    return float(result[self.score_name])

  def summary(self, result: Mapping[str, Any], config: Any) -> str:
    return f'{self.score_name} {self.score(result):.4f}'

  def picture(self, result: Mapping[str, Any], config: Any) -> np.ndarray | None:
    """One RGB uint8 picture of the evaluation's `result['pictures']`, or None."""
    del result, config
    return None

  def report(self, result: Mapping[str, Any], *, config: Any, workdir: str, writer: Any,
             step: int) -> dict[str, Any]:
    """eval.py's printed summary, TensorBoard scalars and files; extra json entries."""
    del workdir
    print(self.summary(result, config))
    writer.write_scalars(step, {f'eval/{self.score_name}': self.score(result)})
    return {}

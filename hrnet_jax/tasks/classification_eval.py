"""The classification evaluator: top-k hits counted on device, exact over hosts."""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
import numpy as np

from hrnet_jax import xla_cpu
from hrnet_jax.data import normalization
from hrnet_jax.evaluation import evaluator
from hrnet_jax.evaluation import metrics


@functools.lru_cache(maxsize=8)
def make_cls_step(model, *, mesh: Mesh, ks: tuple[int, ...] = (1, 5)):
  """jit(variables, images, labels, mask) -> ([hits@k..., count], top-1 predictions)."""
  topk = metrics.topk_fn(mesh, ks=ks)

  def step(variables, images, labels, mask):
    logits = model.apply(variables, normalization.normalize(images), train=False)
    return topk(logits, labels, mask), jnp.argmax(logits, -1).astype(jnp.int32)

  return xla_cpu.jit(step)


class ClassificationEvaluator:
  """`Evaluator` of the classification task: [hits@1, hits@5, count] summed in int64."""

  def __init__(self, model, variables, *, mesh: Mesh, ks: tuple[int, ...] = (1, 5)):
    self.variables, self.mesh, self.ks = variables, mesh, tuple(ks)
    self.step = make_cls_step(model, mesh=mesh, ks=self.ks)
    self.total = np.zeros(len(self.ks) + 1, np.int64)

  def update(self, batch) -> Any:
    put = lambda x: evaluator.to_global(x, self.mesh)
    counts, preds = self.step(self.variables, put(batch['image']),
                              put(np.asarray(batch['label'], np.int32)),
                              put(evaluator.batch_mask(batch)))
    self.total += np.asarray(metrics.fetch_replicated(counts), np.int64)
    return preds

  def local_predictions(self, outputs) -> np.ndarray:
    return evaluator.local_rows(outputs, self.mesh)

  def picture(self, batch, predictions: np.ndarray, i: int):
    return (np.asarray(batch['image'][i]), np.asarray(batch['label'][i]), predictions[i])

  def result(self) -> dict[str, Any]:
    return metrics.classification_metrics(self.total, self.ks)

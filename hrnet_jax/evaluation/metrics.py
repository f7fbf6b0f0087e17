"""Exact on-device counting for evaluation: the confusion matrix, top-k hits, host sums.

Everything is counted on device and reduced exactly over every device of every
process. The confusion matrix is the only state: mIoU, per-class IoU and pixel
accuracy are derived from one matrix over the whole evaluation set, as the official
code does (`utils.get_confusion_matrix` + `testval`), never averaged over batches.

Why a `shard_map` with a local `bincount` and a `psum`: a plain `jnp.bincount` on a
batch-sharded array leaves XLA to decide how to partition a scatter into a
replicated (C*C,) buffer, which can mean gathering all pixels of the global batch on
one device. Counting locally and summing (C*C) integers is exact and cheap.

Padded examples (the eval loader's `mask` is False for them) contribute nothing, so
uneven last batches on many hosts count every example exactly once.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P
import numpy as np


def batch_axes(mesh: Mesh) -> tuple[str, ...]:
  """Mesh axes that split the batch: every axis (data and fsdp are both data parallel)."""
  return tuple(mesh.axis_names)


# ----------------------------------------------------------------------------
# Segmentation.
# ----------------------------------------------------------------------------
def local_confusion_matrix(predictions: jax.Array, labels: jax.Array, *,
                           num_classes: int, ignore_label: int,
                           mask: jax.Array | None = None) -> jax.Array:
  """(C, C) int32 counts, rows = ground truth, columns = prediction.

  Pixels whose label is `ignore_label` (or outside [0, C)) and examples whose `mask`
  is False are excluded. Works on whatever part of the batch it is given, so under
  `shard_map` it counts one device's pixels.
  """
  if predictions.shape != labels.shape:
    raise ValueError(f'predictions {predictions.shape} and labels {labels.shape} must '
                     'have the same shape.')
  labels = labels.astype(jnp.int32)
  predictions = predictions.astype(jnp.int32)
  valid = (labels != ignore_label) & (labels >= 0) & (labels < num_classes)
  if mask is not None:
    valid &= mask.reshape(mask.shape + (1,) * (labels.ndim - mask.ndim)).astype(bool)
  # Invalid pixels still need an in-range index; their weight of 0 drops them.
  index = jnp.where(valid, labels * num_classes + jnp.clip(predictions, 0, num_classes - 1), 0)
  counts = jnp.bincount(index.reshape(-1), weights=valid.reshape(-1).astype(jnp.int32),
                        length=num_classes * num_classes)
  return counts.astype(jnp.int32).reshape(num_classes, num_classes)


def confusion_matrix_fn(mesh: Mesh, *, num_classes: int, ignore_label: int):
  """Returns f(predictions, labels, mask) -> replicated (C, C) int32 for global arrays.

  `predictions` and `labels` are (N, ...) and `mask` (N,), all split over the mesh's
  batch axes. Usable inside `jax.jit`. int32 is exact per call up to 2^31 pixels
  (1000 Cityscapes images); `ConfusionMatrix` accumulates calls in int64.
  """
  axes = batch_axes(mesh)

  def per_device(predictions, labels, mask):
    counts = local_confusion_matrix(predictions, labels, num_classes=num_classes,
                                    ignore_label=ignore_label, mask=mask)
    return jax.lax.psum(counts, axes)

  spec = P(axes)
  return jax.shard_map(per_device, mesh=mesh, in_specs=(spec, spec, spec), out_specs=P(),
                       check_vma=False)


class ConfusionMatrix:
  """Host-side int64 sum of per-batch device matrices.

  `add` keeps one device result in flight so the host never waits on the step it
  just dispatched; `result()` flushes.
  """

  def __init__(self, num_classes: int):
    self.num_classes = num_classes
    self._total = np.zeros((num_classes, num_classes), np.int64)
    self._pending: list[jax.Array] = []

  def add(self, counts: jax.Array | np.ndarray) -> None:
    self._pending.append(counts)
    if len(self._pending) > 1:
      self._flush(keep=1)

  def _flush(self, keep: int = 0) -> None:
    while len(self._pending) > keep:
      self._total += fetch_replicated(self._pending.pop(0)).astype(np.int64)

  def result(self) -> np.ndarray:
    self._flush()
    return self._total.copy()


def fetch_replicated(x: Any) -> np.ndarray:
  """numpy value of a replicated (possibly multi-process) global array."""
  # A replicated global array is readable on every process from its local copy.
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    x = x.addressable_data(0)
  return np.asarray(x)


def sum_over_processes(local: np.ndarray) -> np.ndarray:
  """Exact int64 sum over processes (jax arrays are int32 without x64: split in 27 bits)."""
  local = np.asarray(local, np.int64)
  if jax.process_count() == 1:
    return local
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  low = (local & ((1 << 27) - 1)).astype(np.int32)
  high = (local >> 27).astype(np.int32)
  parts = multihost_utils.process_allgather(np.stack([low, high]))
  parts = np.asarray(parts, np.int64).sum(0)
  return parts[0] + (parts[1] << 27)


def segmentation_metrics(confusion: np.ndarray) -> dict[str, Any]:
  """mIoU, per-class IoU, pixel accuracy and mean class accuracy, as the official code.

  IoU_c = tp / max(1, gt + pred - tp): a class absent from both ground truth and
  predictions scores 0 and still counts in the mean, exactly as `testval` does (on
  Cityscapes val every class is present, so this only matters on small sets);
  `present` says which classes occur in the ground truth.
  """
  confusion = np.asarray(confusion, np.float64)
  gt = confusion.sum(1)
  pred = confusion.sum(0)
  tp = np.diag(confusion)
  iou = tp / np.maximum(1.0, gt + pred - tp)
  return {
      'mIoU': float(iou.mean()),
      'per_class_iou': [float(v) for v in iou],
      'pixel_accuracy': float(tp.sum() / max(1.0, gt.sum())),
      'mean_accuracy': float((tp / np.maximum(1.0, gt)).mean()),
      'present': [bool(v) for v in gt > 0],
      'num_pixels': int(gt.sum()),
  }


# ----------------------------------------------------------------------------
# Classification.
# ----------------------------------------------------------------------------
def local_topk_correct(logits: jax.Array, labels: jax.Array, *, ks: Sequence[int] = (1, 5),
                       mask: jax.Array | None = None) -> jax.Array:
  """int32 [count of examples whose label is in the top-k, for k in ks] + [count]."""
  kmax = min(max(ks), logits.shape[-1])
  _, top = jax.lax.top_k(logits, kmax)
  hit = top == labels[:, None].astype(top.dtype)
  valid = jnp.ones(labels.shape, bool) if mask is None else mask.astype(bool)
  counts = [jnp.sum(jnp.any(hit[:, :min(k, kmax)], axis=1) & valid) for k in ks]
  counts.append(jnp.sum(valid))
  return jnp.stack(counts).astype(jnp.int32)


def topk_fn(mesh: Mesh, *, ks: Sequence[int] = (1, 5)):
  """f(logits, labels, mask) -> replicated int32 [hits@k..., count] over all devices."""
  axes = batch_axes(mesh)
  ks = tuple(ks)

  def per_device(logits, labels, mask):
    return jax.lax.psum(local_topk_correct(logits, labels, ks=ks, mask=mask), axes)

  spec = P(axes)
  return jax.shard_map(per_device, mesh=mesh, in_specs=(spec, spec, spec), out_specs=P(),
                       check_vma=False)


def classification_metrics(counts: np.ndarray, ks: Sequence[int] = (1, 5)) -> dict[str, Any]:
  counts = np.asarray(counts, np.int64)
  total = int(counts[-1])
  out = {f'top{k}': float(counts[i] / max(1, total)) for i, k in enumerate(ks)}
  out['num_examples'] = total
  return out


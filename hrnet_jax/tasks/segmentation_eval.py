"""The segmentation evaluator: the official test protocol and one exact confusion matrix.

Fixed-size datasets (Cityscapes) run whole batches in one jitted step sharded over every
device: the protocol (`inference.predict_probs`), the argmax, and the confusion matrix
counted per device and summed over devices and hosts (`metrics.confusion_matrix_fn`).

Datasets of varying image size (`config.data.eval_pad_size` set) are evaluated image by
image, as the official code tests one image at a time: examples are spread round-robin
over this process's devices (dispatch is asynchronous, so they run in parallel) and the
per-process matrices are summed over processes at the end. By default each image runs on
fixed-shape programs (`evaluation/bucketed.py`: windows at true positions, size-dependent
parts padded to buckets), so the number of compilations depends on the scales, not on
how many distinct sizes the dataset has; that equals true-size inference except where
the network sees a whole image, which it sees padded to the bucket (near its border).
`config.eval.size_buckets = False` evaluates each image at its true size instead: exact
whole-image inference, one compilation per distinct size.
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from hrnet_jax import xla_cpu
from hrnet_jax.evaluation import bucketed
from hrnet_jax.evaluation import evaluator
from hrnet_jax.evaluation import inference
from hrnet_jax.evaluation import metrics


def resize_input(images: np.ndarray, size) -> np.ndarray:
  """cv2 INTER_LINEAR on the uint8 image(s) to (H, W), as the official LIP testval
  does before anything else (its predictions then go back to the label size)."""
  if not size:
    return images
  import cv2  # pylint: disable=g-import-not-at-top
  h, w = int(size[0]), int(size[1])
  if images.ndim == 3:
    return cv2.resize(images, (w, h), interpolation=cv2.INTER_LINEAR)
  return np.stack([cv2.resize(im, (w, h), interpolation=cv2.INTER_LINEAR) for im in images])


# Cached: training evaluates every few thousand steps with the same model and protocol,
# and a new jit wrapper would trace (and look up the compilation) again each time.
@functools.lru_cache(maxsize=8)
def make_seg_step(model, *, protocol: inference.Protocol, mesh: Mesh, num_classes: int,
                  ignore_label: int):
  """jit(variables, images, labels, mask) -> (confusion (C, C), predictions)."""
  logits_fn = inference.seg_logits_fn(model)
  cm_fn = metrics.confusion_matrix_fn(mesh, num_classes=num_classes,
                                      ignore_label=ignore_label)

  def step(variables, images, labels, mask):
    probs = inference.predict_probs(logits_fn, variables, images, protocol,
                                    out_size=labels.shape[1:3])
    preds = jnp.argmax(probs, axis=-1).astype(jnp.int32)
    return cm_fn(preds, labels, mask), preds

  return xla_cpu.jit(step)


class _PerImage:
  """One image at a time on one of this process's devices, round-robin."""

  def __init__(self, model, variables, *, protocol, mesh: Mesh, num_classes: int,
               ignore_label: int):
    self.devices = list(mesh.local_devices)
    # Replicate first: training may hand in parameters sharded over several hosts.
    replicated = jax.jit(lambda v: v, out_shardings=NamedSharding(mesh, P()))(variables)
    local = jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), replicated)
    self.variables = [jax.device_put(local, d) for d in self.devices]
    self.next = 0
    self.setup(model, protocol=protocol, num_classes=num_classes, ignore_label=ignore_label)

  def setup(self, model, *, protocol, num_classes, ignore_label):
    """The true-size protocol: one compilation per distinct image size."""
    logits_fn = inference.seg_logits_fn(model)

    def fn(v, image, label):
      probs = inference.predict_probs(logits_fn, v, image, protocol, out_size=label.shape[1:3])
      pred = jnp.argmax(probs, axis=-1).astype(jnp.int32)
      cm = metrics.local_confusion_matrix(pred, label, num_classes=num_classes,
                                          ignore_label=ignore_label)
      return cm, pred[0]

    self.fn = xla_cpu.jit(fn)

  def run(self, k: int, image: np.ndarray, label: np.ndarray):
    put = lambda x: jax.device_put(x[None], self.devices[k])
    return self.fn(self.variables[k], put(image), put(np.asarray(label, np.int32)))

  def __call__(self, image: np.ndarray, label: np.ndarray):
    """(confusion matrix, prediction whose top-left label-sized corner is the result)."""
    k = self.next % len(self.devices)
    self.next += 1
    return self.run(k, image, label)


class _Bucketed(_PerImage):
  """One image at a time on fixed-shape programs (`bucketed`): compilations depend on
  the scales and window shapes, not on how many distinct image sizes there are."""

  def __init__(self, *args, image_bucket, label_bucket, resize_output, bucket_setting,
               **kwargs):
    self.buckets = dict(image_bucket=image_bucket, label_bucket=label_bucket,
                        resize_output=resize_output, bucket_setting=bucket_setting)
    super().__init__(*args, **kwargs)

  def setup(self, model, *, protocol, num_classes, ignore_label):
    self.predictor = bucketed.BucketedPredictor(
        model, protocol=protocol, num_classes=num_classes, ignore_label=ignore_label,
        **self.buckets)

  def run(self, k: int, image: np.ndarray, label: np.ndarray):
    cm, pred, _ = self.predictor(image, np.asarray(label, np.int32), self.devices[k],
                                 self.variables[k])
    return cm, pred


class SegmentationEvaluator:
  """`Evaluator` of the segmentation task (see the module docstring)."""

  def __init__(self, model, variables, *, config, mesh: Mesh,
               protocol: inference.Protocol | None = None):
    self.num_classes = int(config.model.num_classes)
    self.ignore_label = int(config.data.ignore_label)
    self.mesh = mesh
    self.variables = variables
    self.resize_to = config.eval.get('resize_input', None)
    if protocol is None:
      protocol = inference.Protocol.from_config(
          config, align_corners=inference.resolve_align_corners(model, config))
    self.confusion = metrics.ConfusionMatrix(self.num_classes)
    self.per_image = None
    self.step = None
    pad_size = config.data.get('eval_pad_size', None)
    if pad_size and config.eval.get('size_buckets', True):
      pad_size = tuple(int(x) for x in pad_size)
      self.per_image = _Bucketed(
          model, variables, protocol=protocol, mesh=mesh, num_classes=self.num_classes,
          ignore_label=self.ignore_label, image_bucket=self.resize_to or pad_size,
          label_bucket=pad_size, resize_output=bool(self.resize_to),
          bucket_setting=('config.eval.resize_input' if self.resize_to
                          else 'config.data.eval_pad_size'))
    elif pad_size:
      self.per_image = _PerImage(model, variables, protocol=protocol, mesh=mesh,
                                 num_classes=self.num_classes, ignore_label=self.ignore_label)
    else:
      self.step = make_seg_step(model, protocol=protocol, mesh=mesh,
                                num_classes=self.num_classes, ignore_label=self.ignore_label)

  def update(self, batch) -> Any:
    label = np.asarray(batch['label'])
    if label.ndim != 3:
      raise ValueError(f"batch['label'] must be (b, H, W), got {label.shape}.")
    mask = evaluator.batch_mask(batch)
    if self.per_image is None:
      images = evaluator.to_global(resize_input(batch['image'], self.resize_to), self.mesh)
      labels = evaluator.to_global(label.astype(np.int32), self.mesh)
      confusion, preds = self.step(self.variables, images, labels,
                                   evaluator.to_global(mask, self.mesh))
      self.confusion.add(confusion)
      return preds
    heights, widths = evaluator.true_sizes(batch)
    local_preds = np.full(label.shape, self.ignore_label, np.int32)
    for i in np.flatnonzero(mask):
      h, w = int(heights[i]), int(widths[i])
      image = resize_input(batch['image'][i, :h, :w], self.resize_to)
      confusion, pred = self.per_image(image, label[i, :h, :w])
      self.confusion.add(confusion)
      local_preds[i, :h, :w] = np.asarray(pred)[:h, :w]
    return local_preds

  def local_predictions(self, outputs) -> np.ndarray:
    if isinstance(outputs, np.ndarray):
      return outputs
    return evaluator.local_rows(outputs, self.mesh)

  def picture(self, batch, predictions: np.ndarray, i: int):
    heights, widths = evaluator.true_sizes(batch)
    h, w = int(heights[i]), int(widths[i])
    return (np.asarray(batch['image'][i])[:h, :w], np.asarray(batch['label'][i])[:h, :w],
            predictions[i][:h, :w])

  def result(self) -> dict[str, Any]:
    matrix = self.confusion.result()
    if self.per_image is not None:   # per-process matrices: sum them over processes
      matrix = metrics.sum_over_processes(matrix)
    out = metrics.segmentation_metrics(matrix)
    out['confusion_matrix'] = matrix
    return out

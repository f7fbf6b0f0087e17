"""Evaluation over a padded eval loader: exact metrics on any number of devices and hosts.

`evaluate` is what training calls periodically and what `eval.py` runs. Every process
feeds its own per-process batches (the eval loader pads them and marks the padding
with `mask`, so all processes run the same number of steps); one jitted step runs the
test protocol (`inference.py`) on the global batch split over every device, takes the
argmax and counts the confusion matrix on device (`metrics.py`), reduced over all
devices and hosts before it reaches any host.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
import functools
import time
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from hrnet_jax import inference
from hrnet_jax import metrics

BatchCallback = Callable[[Mapping[str, np.ndarray], np.ndarray], None]


class EmptyDatasetError(ValueError):
  """The evaluation loader produced no (unpadded) example."""


def resolve_align_corners(model, config=None) -> bool:
  """align_corners of the model (its resolved options), else the config's, else by head."""
  value = getattr(getattr(model, 'opts', None), 'align_corners', None)
  if value is None:
    value = getattr(model, 'align_corners', None)
  if value is None and config is not None:
    value = config.model.get('align_corners', None)
  if value is None:
    # Family defaults of the official code: HRNet-OCR branch True, pytorch-v1.1 False.
    head = getattr(model, 'head', None) or (config.model.head if config is not None else '')
    value = head == 'ocr'
  return bool(value)


def local_rows(x: jax.Array) -> np.ndarray:
  """This process's rows of a batch-sharded global array, in process-local order."""
  if not isinstance(x, jax.Array):
    return np.asarray(x)
  parts, seen = [], set()
  for shard in sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0):
    start = shard.index[0].start or 0
    if start in seen:   # replicated over a non-batch axis
      continue
    seen.add(start)
    parts.append(np.asarray(shard.data))
  return np.concatenate(parts, axis=0)


def _global(local: np.ndarray, mesh: Mesh) -> jax.Array:
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


def _resize_input(images: np.ndarray, size) -> np.ndarray:
  """cv2 INTER_LINEAR on the uint8 image(s) to (H, W), as the official LIP testval
  does before anything else (its predictions then go back to the label size)."""
  if not size:
    return images
  import cv2  # pylint: disable=g-import-not-at-top
  h, w = int(size[0]), int(size[1])
  if images.ndim == 3:
    return cv2.resize(images, (w, h), interpolation=cv2.INTER_LINEAR)
  return np.stack([cv2.resize(im, (w, h), interpolation=cv2.INTER_LINEAR) for im in images])


def _check_batch(batch: Mapping[str, Any], head: str) -> None:
  missing = [k for k in ('image', 'label') if k not in batch]
  if missing:
    raise KeyError(f'eval batch lacks {missing}; the eval loader must yield image, label '
                   f'and mask (it has {sorted(batch)}).')
  image = np.asarray(batch['image'])
  if image.ndim != 4 or image.shape[-1] != 3 or image.dtype != np.uint8:
    raise ValueError(f"batch['image'] must be uint8 (b, H, W, 3), got {image.dtype} "
                     f'{image.shape}.')
  if head != 'cls' and np.asarray(batch['label']).ndim != 3:
    raise ValueError(f"batch['label'] must be (b, H, W), got {np.shape(batch['label'])}.")


# Cached: training evaluates every few thousand steps with the same model and protocol,
# and a new jit wrapper would trace (and look up the compilation) again each time.
@functools.lru_cache(maxsize=8)
def make_seg_step(model, *, protocol: inference.Protocol, mesh: Mesh, num_classes: int,
                  ignore_label: int):
  """jit(variables, images, labels, mask) -> (confusion (C, C), predictions, count)."""
  logits_fn = inference.seg_logits_fn(model)
  cm_fn = metrics.confusion_matrix_fn(mesh, num_classes=num_classes,
                                      ignore_label=ignore_label)

  def step(variables, images, labels, mask):
    probs = inference.predict_probs(logits_fn, variables, images, protocol,
                                    out_size=labels.shape[1:3])
    preds = jnp.argmax(probs, axis=-1).astype(jnp.int32)
    return cm_fn(preds, labels, mask), preds, jnp.sum(mask.astype(jnp.int32))

  return jax.jit(step)


@functools.lru_cache(maxsize=8)
def make_cls_step(model, *, mesh: Mesh, ks: tuple[int, ...] = (1, 5)):
  """jit(variables, images, labels, mask) -> ([hits@k..., count], top-1 predictions, count)."""
  topk = metrics.topk_fn(mesh, ks=ks)

  def step(variables, images, labels, mask):
    logits = model.apply(variables, inference.normalize(images), train=False)
    return (topk(logits, labels, mask), jnp.argmax(logits, -1).astype(jnp.int32),
            jnp.sum(mask.astype(jnp.int32)))

  return jax.jit(step)


class _PerImage:
  """Exact protocol for images of varying size: each at its true size, on local devices.

  The official code tests one image at a time at its own size; padding images to a
  common size would change what the network sees. Examples are spread round-robin
  over this process's devices (dispatch is asynchronous, so they run in parallel);
  one compilation per distinct image size.
  """

  def __init__(self, model, variables, *, protocol, mesh: Mesh, num_classes: int,
               ignore_label: int):
    self.devices = jax.local_devices()
    # Replicate first: training may hand in parameters sharded over several hosts.
    replicated = jax.jit(lambda v: v, out_shardings=NamedSharding(mesh, P()))(variables)
    local = jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), replicated)
    self.variables = [jax.device_put(local, d) for d in self.devices]
    self.num_classes = num_classes
    logits_fn = inference.seg_logits_fn(model)

    def fn(v, image, label):
      probs = inference.predict_probs(logits_fn, v, image, protocol, out_size=label.shape[1:3])
      pred = jnp.argmax(probs, axis=-1).astype(jnp.int32)
      cm = metrics.local_confusion_matrix(pred, label, num_classes=num_classes,
                                          ignore_label=ignore_label)
      return cm, pred[0]

    self.fn = jax.jit(fn)
    self.next = 0

  def __call__(self, image: np.ndarray, label: np.ndarray):
    k = self.next % len(self.devices)
    self.next += 1
    put = lambda x: jax.device_put(x[None], self.devices[k])
    return self.fn(self.variables[k], put(image), put(np.asarray(label, np.int32)))


def _sum_over_processes(local: np.ndarray) -> np.ndarray:
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


def evaluate(model, variables, eval_loader: Iterable[Mapping[str, np.ndarray]], *,
             config, mesh: Mesh, protocol: inference.Protocol | None = None,
             on_batch: BatchCallback | None = None) -> dict[str, Any]:
  """Runs the test protocol of `config.eval` over `eval_loader`; returns the metrics.

  Segmentation: dict(mIoU, per_class_iou, pixel_accuracy, mean_accuracy, present,
  confusion_matrix (int64 numpy), pictures, num_examples, seconds). Classification
  (`config.model.head == 'cls'`): dict(top1, top5, num_examples, pictures, seconds).
  `pictures`: up to `config.eval.num_pictures` (image uint8, label, prediction) numpy
  triples from process 0's unpadded examples, at their true size. `on_batch(local_batch,
  local_predictions)` is called on every process for every batch (submission files);
  predictions are padded like the batch (ignore_label outside the true size).

  Datasets of varying image size (`config.data.eval_pad_size` set) are evaluated image
  by image at the true size (exact, one compilation per size); fixed-size datasets
  (Cityscapes) run whole batches sharded over every device.
  """
  head = config.model.head
  num_classes = int(config.model.num_classes)
  ignore_label = int(config.data.ignore_label)
  num_pictures = int(config.eval.get('num_pictures', 0))
  per_image = None
  if head == 'cls':
    step = make_cls_step(model, mesh=mesh)
    total = np.zeros(3, np.int64)
  else:
    if protocol is None:
      protocol = inference.Protocol.from_config(
          config, align_corners=resolve_align_corners(model, config))
    confusion = metrics.ConfusionMatrix(num_classes)
    if config.data.get('eval_pad_size', None):
      per_image = _PerImage(model, variables, protocol=protocol, mesh=mesh,
                            num_classes=num_classes, ignore_label=ignore_label)
    else:
      step = make_seg_step(model, protocol=protocol, mesh=mesh, num_classes=num_classes,
                           ignore_label=ignore_label)
  resize_to = config.eval.get('resize_input', None)
  pictures: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
  counts: list[Any] = []
  start = time.time()
  num_batches = 0
  for batch in eval_loader:
    _check_batch(batch, head)
    local_mask = np.asarray(batch.get('mask', np.ones(len(batch['image']), bool)), bool)
    size = batch['image'].shape[1:3]
    heights = np.asarray(batch.get('height', np.full(len(local_mask), size[0])))
    widths = np.asarray(batch.get('width', np.full(len(local_mask), size[1])))
    if per_image is not None:
      local_preds = np.full(np.shape(batch['label']), ignore_label, np.int32)
      for i in np.flatnonzero(local_mask):
        h, w = int(heights[i]), int(widths[i])
        image = _resize_input(batch['image'][i, :h, :w], resize_to)
        cm, pred = per_image(image, batch['label'][i, :h, :w])
        confusion.add(cm)
        local_preds[i, :h, :w] = np.asarray(pred)
      counts.append(int(local_mask.sum()))
    else:
      images = _global(_resize_input(batch['image'], resize_to), mesh)
      labels = _global(np.asarray(batch['label'], np.int32), mesh)
      mask = _global(local_mask, mesh)
      result, preds, count = step(variables, images, labels, mask)
      counts.append(count)
      if head == 'cls':
        total += np.asarray(metrics.fetch_replicated(result), np.int64)
      else:
        confusion.add(result)
      local_preds = None
    want_pictures = jax.process_index() == 0 and len(pictures) < num_pictures
    if want_pictures or on_batch is not None:
      if local_preds is None:
        local_preds = local_rows(preds)
      if on_batch is not None:
        on_batch(batch, local_preds)
      for i in np.flatnonzero(local_mask):
        if not want_pictures or len(pictures) >= num_pictures:
          break
        h, w = (int(heights[i]), int(widths[i])) if head != 'cls' else (None, None)
        image = np.asarray(batch['image'][i])
        label = np.asarray(batch['label'][i])
        pred = local_preds[i]
        if head != 'cls':
          image, label, pred = image[:h, :w], label[:h, :w], pred[:h, :w]
        pictures.append((image, label, pred))
    num_batches += 1
  if per_image is not None:
    num_examples = int(_sum_over_processes(np.array([sum(counts)]))[0])
  else:
    num_examples = int(sum(int(metrics.fetch_replicated(c)) for c in counts))
  if num_examples == 0:
    raise EmptyDatasetError(
        f'the evaluation set is empty ({num_batches} batches, 0 unpadded examples): check '
        f'config.data.name={config.data.name!r}, eval_split={config.data.eval_split!r}, '
        f'data_dir and max_eval_examples.')
  seconds = time.time() - start
  if head == 'cls':
    out = metrics.classification_metrics(total)
  else:
    matrix = confusion.result()
    if per_image is not None:
      matrix = _sum_over_processes(matrix)
    out = metrics.segmentation_metrics(matrix)
    out['confusion_matrix'] = matrix
  out.update(num_examples=num_examples, pictures=pictures, seconds=seconds)
  logging.info('Evaluated %d examples in %.1f s: %s', num_examples, seconds,
               {k: v for k, v in out.items() if k in ('mIoU', 'pixel_accuracy', 'top1', 'top5')})
  return out

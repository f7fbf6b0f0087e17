"""Semantic segmentation (Cityscapes, PASCAL-Context, LIP, ADE20K, the synthetic scenes).

Batches: training {'image': uint8 (b, H, W, 3) crops, 'label': int32 (b, H, W)};
evaluation whole images padded bottom/right to one size, {'image', 'label' (padded with
ignore_label), 'height', 'width' (true sizes), 'mask', 'index'}. The loss is the
official one (weighted or OHEM cross-entropy on logits upsampled to the label size,
OCR's auxiliary term; `segmentation_losses`); evaluation runs the official test
protocol (`hrnet_jax.evaluation.inference`) and counts one confusion matrix over the
whole split (`segmentation_eval`), from which mIoU, per-class IoU and pixel accuracy
come; the best checkpoint is the one with the highest mIoU.

Labels cross the worker -> main process boundary as uint8 (4x less to copy) and become
int32 in `finish_batch`.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import cv2
import numpy as np

from hrnet_jax.data import palettes
from hrnet_jax.data import sources
from hrnet_jax.data import transforms
from hrnet_jax.data.errors import DataError
from hrnet_jax.data.registry import DatasetInfo
from hrnet_jax.tasks import base


@dataclasses.dataclass(frozen=True)
class TrainTransform:
  """The official training augmentation: multi-scale resize, crop, flip (LIP order)."""
  info: DatasetInfo
  crop_size: tuple[int, int]
  base_size: int
  scale_factor: int
  multi_scale: bool
  flip: bool
  ignore_label: int

  def __call__(self, example, rng: np.random.Generator, what: str) -> dict[str, np.ndarray]:
    image, label = sources.decode_segmentation(example, self.info, what)
    draw = transforms.draw_segmentation(
        rng, image.shape[0], image.shape[1], crop_size=self.crop_size,
        base_size=self.base_size, scale_factor=self.scale_factor,
        multi_scale=self.multi_scale, flip=self.flip, lip_order=self.info.lip_order)
    image, label = transforms.apply_segmentation(
        image, label, draw, crop_size=self.crop_size, base_size=self.base_size,
        ignore_label=self.ignore_label, flip_pairs=self.info.flip_pairs,
        lip_order=self.info.lip_order)
    # Decoded as BGR (OpenCV); converting only the crop is cheaper than the whole image.
    return {'image': cv2.cvtColor(image, cv2.COLOR_BGR2RGB), 'label': label}

  def finish_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    batch['label'] = batch['label'].astype(np.int32)
    return batch


@dataclasses.dataclass(frozen=True)
class EvalTransform:
  """Whole images padded to `pad_size`, with their true height and width."""
  info: DatasetInfo
  pad_size: tuple[int, int]
  ignore_label: int

  def __call__(self, example, what: str) -> dict[str, np.ndarray]:
    image, label = sources.decode_segmentation(example, self.info, what)
    h, w = label.shape
    if h > self.pad_size[0] or w > self.pad_size[1]:
      raise DataError(f'{what}: image is {h}x{w}, larger than config.data.eval_pad_size='
                      f'{self.pad_size}; raise eval_pad_size')
    image = transforms.pad_to(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), self.pad_size, 0)
    label = transforms.pad_to(label, self.pad_size, self.ignore_label)
    return {'image': image, 'label': label.astype(np.int32), 'height': np.int32(h),
            'width': np.int32(w)}

  def padding(self) -> dict[str, np.ndarray]:
    return {'image': np.zeros(self.pad_size + (3,), np.uint8),
            'label': np.full(self.pad_size, self.ignore_label, np.int32),
            'height': np.int32(0), 'width': np.int32(0)}


def class_names(config, num_classes: int) -> list[str]:
  """The dataset's class names, 'class k' for classes it does not name."""
  from hrnet_jax.data import registry  # pylint: disable=g-import-not-at-top
  try:
    names = list(registry.dataset_info(config.data).class_names)[:num_classes]
  except DataError:
    names = []
  return names + [f'class {k}' for k in range(len(names), num_classes)]


def evaluation_picture(pictures, *, dataset: str, num_classes: int,
                       ignore_label: int) -> np.ndarray | None:
  """Rows of (input | label | prediction), stacked; None without pictures."""
  if not pictures:
    return None
  palette = palettes.get_palette(dataset, num_classes)
  rows = []
  for image, label, pred in pictures:
    image = np.asarray(image, np.uint8)
    label = np.asarray(label)
    pred = np.asarray(pred)
    if pred.shape != label.shape or image.shape[:2] != label.shape:
      raise ValueError(f'picture parts differ in size: image {image.shape}, label '
                       f'{label.shape}, prediction {pred.shape}.')
    rows.append(palettes.side_by_side(
        image, palettes.colorize(label, palette, ignore_label=ignore_label),
        palettes.colorize(pred, palette, ignore_label=ignore_label)))
  return palettes.stack_rows(rows)


class SegmentationTask(base.Task):
  """Per-pixel classes; mIoU over one confusion matrix of the whole split."""

  name = 'segmentation'
  score_name = 'mIoU'
  config_fields = (
      'model.num_classes', 'data.crop_size', 'data.base_size', 'data.scale_factor',
      'data.multi_scale', 'data.flip', 'data.ignore_label', 'data.eval_pad_size',
      'loss.class_weights', 'loss.ohem', 'loss.ohem_thresh', 'loss.ohem_min_kept',
      'loss.aux_weight', 'loss.chunk_images', 'eval.mode', 'eval.crop_size',
      'eval.stride_rate', 'eval.window_layout', 'eval.resize_input', 'eval.scales',
      'eval.flip', 'eval.num_pictures')

  def train_transform(self, config, info: DatasetInfo) -> TrainTransform:
    data = config.data
    return TrainTransform(
        info=info, crop_size=tuple(int(v) for v in data.crop_size),
        base_size=int(data.base_size), scale_factor=int(data.scale_factor),
        multi_scale=bool(data.multi_scale), flip=bool(data.flip),
        ignore_label=int(data.ignore_label))

  def eval_transform(self, config, info: DatasetInfo, source) -> EvalTransform:
    pad = config.data.get('eval_pad_size', None)
    if not pad:
      pad = sources.image_shape(source, info)
      if None in pad:
        raise DataError(f'{info.name} images vary in size: set config.data.eval_pad_size '
                        '(h, w) to at least the largest evaluation image')
    return EvalTransform(info=info, pad_size=tuple(int(v) for v in pad),
                         ignore_label=int(config.data.ignore_label))

  def make_loss(self, model, config):
    # pylint: disable=g-import-not-at-top  (JAX: not in the data-loader workers)
    from hrnet_jax.evaluation import inference
    from hrnet_jax.tasks import segmentation_losses
    align_corners = inference.resolve_align_corners(model, config)
    ignore_label = int(config.data.ignore_label)

    def loss(outputs, batch):
      return segmentation_losses.segmentation_loss(
          outputs, batch['label'], loss_config=config.loss, align_corners=align_corners,
          ignore_label=ignore_label)

    return loss

  def make_evaluator(self, model, variables, *, config, mesh, protocol=None):
    from hrnet_jax.tasks import segmentation_eval  # pylint: disable=g-import-not-at-top
    return segmentation_eval.SegmentationEvaluator(model, variables, config=config,
                                                   mesh=mesh, protocol=protocol)

  def summary(self, result, config) -> str:
    names = class_names(config, len(result['per_class_iou']))
    present = result.get('present', [True] * len(names))
    ious = ', '.join(f'{n} {v:.3f}' for n, v, p in zip(names, result['per_class_iou'],
                                                         present) if p)
    return f"mIoU {result['mIoU']:.4f}, pixel accuracy {result['pixel_accuracy']:.4f}; " \
           f'IoU: {ious}'

  def picture(self, result, config) -> np.ndarray | None:
    return evaluation_picture(result.get('pictures', []), dataset=config.data.name,
                              num_classes=int(config.model.num_classes),
                              ignore_label=int(config.data.ignore_label))

  def report(self, result, *, config, workdir: str, writer, step: int) -> dict[str, Any]:
    from PIL import Image  # pylint: disable=g-import-not-at-top
    from hrnet_jax.evaluation import outputs  # pylint: disable=g-import-not-at-top
    num_classes = int(config.model.num_classes)
    names = class_names(config, num_classes)
    print(outputs.iou_table(result, names))
    print(f"{result['num_examples']} images in {result['seconds']:.1f} s")
    writer.write_scalars(step, {
        'eval/mIoU': result['mIoU'], 'eval/pixel_accuracy': result['pixel_accuracy'],
        **{f'eval_iou/{n}': v for n, v in zip(names, result['per_class_iou'])}})
    palette = palettes.get_palette(config.data.name, num_classes)
    chart = outputs.bar_chart(result['per_class_iou'], names, palette,
                              title=f"{config.data.name} mIoU {100 * result['mIoU']:.2f}")
    Image.fromarray(chart).save(os.path.join(workdir, outputs.BAR_CHART_FILE))
    ignore = int(config.data.ignore_label)
    outputs.write_pictures(os.path.join(workdir, outputs.PICTURES_DIR),
                           result['pictures'], palette, ignore_label=ignore)
    writer.write_images(step, {f'eval/picture_{k}': outputs.picture(
        *p, palette, ignore_label=ignore)[None] for k, p in enumerate(result['pictures'])})
    return {'class_names': names}


TASK = SegmentationTask()

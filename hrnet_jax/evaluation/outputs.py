"""What an evaluation leaves behind: the IoU table, eval_results.json, a bar chart,
prediction pictures and Cityscapes test-server submission PNGs.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from hrnet_jax.data import palettes

RESULTS_FILE = 'eval_results.json'
BAR_CHART_FILE = 'per_class_iou.png'
PICTURES_DIR = 'eval_pictures'


def iou_table(results: Mapping[str, Any], class_names: Sequence[str]) -> str:
  """A plain-text table: one row per class, then mIoU and pixel accuracy."""
  ious = results['per_class_iou']
  present = results.get('present', [True] * len(ious))
  width = max([len(n) for n in class_names] + [10])
  lines = [f'{"class":<{width}}  IoU (%)', '-' * (width + 9)]
  for name, iou, here in zip(class_names, ious, present):
    lines.append(f'{name:<{width}}  {100 * iou:7.2f}' + ('' if here else '  (absent)'))
  lines.append('-' * (width + 9))
  lines.append(f'{"mIoU":<{width}}  {100 * results["mIoU"]:7.2f}')
  lines.append(f'{"pixel acc.":<{width}}  {100 * results["pixel_accuracy"]:7.2f}')
  return '\n'.join(lines)


def write_results_json(path: str, results: Mapping[str, Any], **extra: Any) -> None:
  """eval_results.json: the metrics (confusion matrix as a list), no pictures."""
  out = {k: v for k, v in results.items() if k != 'pictures'}
  if 'confusion_matrix' in out:
    out['confusion_matrix'] = np.asarray(out['confusion_matrix']).tolist()
  out.update(extra)
  with open(path, 'w') as f:
    json.dump(out, f, indent=2, default=str)


def bar_chart(per_class_iou: Sequence[float], class_names: Sequence[str],
              palette: np.ndarray, *, title: str = '') -> np.ndarray:
  """Horizontal bars of per-class IoU in the class colours (RGB uint8), drawn with PIL."""
  font = ImageFont.load_default()
  row, label_w, bar_w, pad = 18, 9 * max(len(n) for n in class_names) + 10, 400, 10
  height = pad * 2 + row * (len(class_names) + 2)
  img = Image.new('RGB', (label_w + bar_w + 70 + pad, height), 'white')
  draw = ImageDraw.Draw(img)
  draw.text((pad, pad), title or 'per-class IoU (%)', fill='black', font=font)
  top = pad + row
  for tick in range(0, 101, 20):
    x = label_w + bar_w * tick // 100
    draw.line([(x, top), (x, height - pad - row)], fill=(220, 220, 220))
    draw.text((x - 6, height - pad - row + 3), str(tick), fill='black', font=font)
  for k, (name, iou) in enumerate(zip(class_names, per_class_iou)):
    y = top + k * row
    draw.text((pad, y + 3), name, fill='black', font=font)
    color = tuple(int(c) for c in palette[k % len(palette)])
    draw.rectangle([label_w, y + 2, label_w + int(bar_w * max(0.0, iou)), y + row - 3],
                   fill=color, outline='black')
    draw.text((label_w + int(bar_w * max(0.0, iou)) + 5, y + 3), f'{100 * iou:.1f}',
              fill='black', font=font)
  return np.asarray(img)


def picture(image: np.ndarray, label: np.ndarray, prediction: np.ndarray,
            palette: np.ndarray, *, ignore_label: int = 255) -> np.ndarray:
  """Input | ground truth | prediction overlaid on the input, side by side."""
  return palettes.side_by_side(
      image, palettes.colorize(label, palette, ignore_label=ignore_label),
      palettes.overlay(image, prediction, palette, ignore_label=ignore_label))


def write_pictures(directory: str, pictures, palette: np.ndarray, *,
                   ignore_label: int = 255) -> list[str]:
  os.makedirs(directory, exist_ok=True)
  paths = []
  for k, (image, label, prediction) in enumerate(pictures):
    path = os.path.join(directory, f'{k:03d}.png')
    Image.fromarray(picture(image, label, prediction, palette,
                            ignore_label=ignore_label)).save(path)
    overlay_path = os.path.join(directory, f'{k:03d}_overlay.png')
    Image.fromarray(palettes.overlay(image, prediction, palette,
                                     ignore_label=ignore_label)).save(overlay_path)
    paths += [path, overlay_path]
  return paths


def train_id_to_label_id(label_to_train_id: np.ndarray | None, num_classes: int) -> np.ndarray:
  """(256,) uint8 lookup from predicted trainIds to the dataset's stored label ids.

  Each trainId maps back to the smallest label id that maps to it (Cityscapes: 0->7
  road ... 18->33 bicycle); without a mapping, ids are written as they are.
  """
  inverse = np.arange(256, dtype=np.uint8)
  if label_to_train_id is None:
    return inverse
  inverse[:] = 0
  lut = np.asarray(label_to_train_id)
  for train_id in range(num_classes):
    sources = np.flatnonzero(lut == train_id)
    if not len(sources):
      raise ValueError(f'trainId {train_id} has no label id in the dataset mapping.')
    inverse[train_id] = sources[0]
  return inverse


def example_names(config, info) -> Callable[[int], str]:
  """index -> the example's id in the eval split (Cityscapes: city_seq_frame)."""
  from hrnet_jax.data import sources  # pylint: disable=g-import-not-at-top  (TFDS: slow)
  source = sources.open_split(info, config.data.eval_split, data_dir=config.data.data_dir,
                              manual_dir=config.data.manual_dir)

  def name_of(index: int) -> str:
    value = source[index].get(info.id_key) if info.id_key else None
    if isinstance(value, bytes):
      value = value.decode('utf-8')
    return str(value) if value else f'{config.data.eval_split}_{index:06d}'

  return name_of


_CITYSCAPES_ID = re.compile(r'^([a-z_]+?)_(\d{6})_(\d{6})')


def submission_path(directory: str, name: str) -> str:
  """Cityscapes ids `city_seq_frame` -> DIR/city/city_seq_frame_leftImg8bit.png (the
  benchmark matches files by their `city_seq_frame` prefix); others -> DIR/name.png."""
  name = os.path.splitext(os.path.basename(name))[0]
  match = _CITYSCAPES_ID.match(name)
  if match:
    stem = match.group(0)
    return os.path.join(directory, match.group(1), f'{stem}_leftImg8bit.png')
  return os.path.join(directory, f'{name}.png')


class SubmissionWriter:
  """on_batch callback of `evaluate`: one label-id PNG per unpadded example."""

  def __init__(self, directory: str, *, name_of: Callable[[int], str],
               label_to_train_id: np.ndarray | None, num_classes: int):
    self.directory = directory
    self.name_of = name_of
    self.inverse = train_id_to_label_id(label_to_train_id, num_classes)
    self.written: list[str] = []

  def __call__(self, batch: Mapping[str, np.ndarray], predictions: np.ndarray) -> None:
    mask = np.asarray(batch.get('mask', np.ones(len(predictions), bool)), bool)
    for i in np.flatnonzero(mask):
      if 'index' not in batch:
        raise KeyError("the eval batches carry no 'index'; submission files need each "
                       "example's index to name its PNG.")
      h = int(batch['height'][i]) if 'height' in batch else predictions.shape[1]
      w = int(batch['width'][i]) if 'width' in batch else predictions.shape[2]
      pred = np.clip(predictions[i, :h, :w], 0, 255).astype(np.uint8)
      path = submission_path(self.directory, self.name_of(int(batch['index'][i])))
      os.makedirs(os.path.dirname(path), exist_ok=True)
      Image.fromarray(self.inverse[pred]).save(path)
      self.written.append(path)

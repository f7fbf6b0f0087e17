"""Preprocessing of the official code as pure numpy / OpenCV / PIL functions.

Segmentation training (HRNet-Semantic-Segmentation `BaseDataset.gen_sample`):
  s = 0.5 + randint(0, scale_factor) / 10; long side -> int(base_size * s + 0.5), the other
  side keeps the aspect ratio (int(x + 0.5)); image bilinear, label nearest (cv2); pad
  bottom/right up to the crop (image 0, label ignore); random crop; horizontal flip with
  p = 0.5. LIP flips first (swapping left/right classes), resizes to the crop size, then
  runs the same multi-scale crop without flip.

Every random number comes from an explicit `np.random.Generator`, one draw per example
shared by image and label; `draw_segmentation` makes the draws and `apply_segmentation`
is deterministic given them, so tests can feed fixed draws. Images stay uint8 here;
normalisation runs on the accelerator (`hrnet_jax.data.normalize`).

Classification (HRNet-Image-Classification = torchvision on PIL images):
  train RandomResizedCrop(size) + RandomHorizontalFlip; eval Resize(256) + CenterCrop(224).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import cv2
import numpy as np
from PIL import Image


@dataclasses.dataclass(frozen=True)
class SegDraw:
  """The random draws of one training example."""
  scale: float          # multi-scale factor s (1.0 when multi-scale is off)
  crop_y: int           # top of the crop in the resized + padded image
  crop_x: int
  flip: bool


def scaled_size(height: int, width: int, long_size: int) -> tuple[int, int]:
  """(h, w) with the long side `long_size`, rounded as the official multi_scale_aug."""
  if height > width:
    return long_size, int(width * long_size / height + 0.5)
  return int(height * long_size / width + 0.5), long_size


def long_side(base_size: int, scale: float) -> int:
  return int(base_size * scale + 0.5)


def _resized_shape(height: int, width: int, *, crop_size, base_size, scale, lip_order):
  if lip_order:
    height, width = crop_size
  return scaled_size(height, width, long_side(base_size, scale))


def draw_segmentation(rng: np.random.Generator, height: int, width: int, *,
                      crop_size: Sequence[int], base_size: int, scale_factor: int,
                      multi_scale: bool, flip: bool, lip_order: bool = False) -> SegDraw:
  """Draws scale, crop offset and flip for an image of `height` x `width`."""
  scale = 0.5 + int(rng.integers(0, scale_factor + 1)) / 10.0 if multi_scale else 1.0
  new_h, new_w = _resized_shape(height, width, crop_size=crop_size, base_size=base_size,
                                scale=scale, lip_order=lip_order)
  pad_h, pad_w = max(new_h, crop_size[0]), max(new_w, crop_size[1])
  crop_x = int(rng.integers(0, pad_w - crop_size[1] + 1))
  crop_y = int(rng.integers(0, pad_h - crop_size[0] + 1))
  do_flip = bool(rng.integers(0, 2)) if flip else False
  return SegDraw(scale=scale, crop_y=crop_y, crop_x=crop_x, flip=do_flip)


def swap_classes(label: np.ndarray, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
  """Swaps left/right classes (LIP) with a lookup table."""
  if not pairs:
    return label
  lut = np.arange(256, dtype=np.uint8)
  for a, b in pairs:
    lut[a], lut[b] = b, a
  return cv2.LUT(label, lut)


def _crop_with_padding(array: np.ndarray, y: int, x: int, crop_h: int, crop_w: int,
                       fill) -> np.ndarray:
  """array[y:y+crop_h, x:x+crop_w] of the array padded bottom/right with `fill`.

  Same result as padding the whole array (cv2.copyMakeBorder, as the official code) and
  cropping, without copying the whole padded array.
  """
  out_shape = (crop_h, crop_w) + array.shape[2:]
  window = array[y:y + crop_h, x:x + crop_w]
  if window.shape[:2] == (crop_h, crop_w):
    return np.ascontiguousarray(window)
  out = np.empty(out_shape, array.dtype)
  out[...] = fill
  out[:window.shape[0], :window.shape[1]] = window
  return out


def apply_segmentation(image: np.ndarray, label: np.ndarray, draw: SegDraw, *,
                       crop_size: Sequence[int], base_size: int, ignore_label: int,
                       flip_pairs: Sequence[tuple[int, int]] = (),
                       lip_order: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """The official training transform for given draws; image (h, w, C) uint8, label (h, w)."""
  crop_h, crop_w = crop_size
  if lip_order:
    if draw.flip:
      image, label = image[:, ::-1], swap_classes(np.ascontiguousarray(label[:, ::-1]),
                                                  flip_pairs)
    image = cv2.resize(image, (crop_w, crop_h), interpolation=cv2.INTER_LINEAR)
    label = cv2.resize(label, (crop_w, crop_h), interpolation=cv2.INTER_NEAREST)
  new_h, new_w = scaled_size(image.shape[0], image.shape[1], long_side(base_size, draw.scale))
  if (new_h, new_w) != image.shape[:2]:
    image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    label = cv2.resize(label, (new_w, new_h), interpolation=cv2.INTER_NEAREST)
  image = _crop_with_padding(image, draw.crop_y, draw.crop_x, crop_h, crop_w, 0)
  label = _crop_with_padding(label, draw.crop_y, draw.crop_x, crop_h, crop_w, ignore_label)
  if draw.flip and not lip_order:
    image = np.ascontiguousarray(image[:, ::-1])
    label = swap_classes(np.ascontiguousarray(label[:, ::-1]), flip_pairs)
  return image, label


def pad_to(array: np.ndarray, size: Sequence[int], fill) -> np.ndarray:
  """Pads bottom/right to `size` (h, w); the evaluation batches' fixed shape."""
  h, w = array.shape[:2]
  if h > size[0] or w > size[1]:
    raise ValueError(f'{h}x{w} does not fit in {size[0]}x{size[1]}')
  if (h, w) == tuple(size):
    return array
  out = np.empty(tuple(size) + array.shape[2:], array.dtype)
  out[...] = fill
  out[:h, :w] = array
  return out


# --- classification (torchvision semantics on PIL images) ---------------------------------

def draw_resized_crop(rng: np.random.Generator, height: int, width: int, *,
                      scale: Sequence[float] = (0.08, 1.0),
                      ratio: Sequence[float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
  """(top, left, h, w) as torchvision RandomResizedCrop.get_params, with `rng`."""
  area = height * width
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(10):
    target_area = area * rng.uniform(scale[0], scale[1])
    aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
    w = int(round(math.sqrt(target_area * aspect)))
    h = int(round(math.sqrt(target_area / aspect)))
    if 0 < w <= width and 0 < h <= height:
      top = int(rng.integers(0, height - h + 1))
      left = int(rng.integers(0, width - w + 1))
      return top, left, h, w
  # Fallback: the central crop with the aspect ratio clamped to `ratio`.
  in_ratio = width / height
  if in_ratio < min(ratio):
    w, h = width, int(round(width / min(ratio)))
  elif in_ratio > max(ratio):
    h, w = height, int(round(height * max(ratio)))
  else:
    w, h = width, height
  return (height - h) // 2, (width - w) // 2, h, w


def apply_resized_crop(image: np.ndarray, box: tuple[int, int, int, int], size: int,
                       flip: bool) -> np.ndarray:
  top, left, h, w = box
  pil = Image.fromarray(image).crop((left, top, left + w, top + h))
  pil = pil.resize((size, size), Image.BILINEAR)
  out = np.asarray(pil)
  return np.ascontiguousarray(out[:, ::-1]) if flip else out


def train_classification(image: np.ndarray, rng: np.random.Generator, *, size: int,
                         flip: bool = True) -> np.ndarray:
  box = draw_resized_crop(rng, image.shape[0], image.shape[1])
  do_flip = bool(rng.integers(0, 2)) if flip else False
  return apply_resized_crop(image, box, size, do_flip)


def eval_classification(image: np.ndarray, *, resize: int, crop: int) -> np.ndarray:
  """Resize the short side to `resize` (torchvision Resize(int)), centre crop `crop`."""
  h, w = image.shape[:2]
  if h <= w:
    new_h, new_w = resize, int(resize * w / h)
  else:
    new_h, new_w = int(resize * h / w), resize
  pil = Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR)
  top = int(round((new_h - crop) / 2.0))
  left = int(round((new_w - crop) / 2.0))
  return np.asarray(pil.crop((left, top, left + crop, top + crop)))

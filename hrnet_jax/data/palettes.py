"""Colour palettes and the pictures made with them (colourised labels, overlays).

Cityscapes uses the official colours of cityscapesScripts' `labels.py` (by trainId).
Datasets without an official 19-colour table (PASCAL-Context, LIP, ADE20K, anything
new) use the bit-interleaved palette the official HRNet code writes its prediction
PNGs with (`get_palette`, the PASCAL VOC scheme), so our pictures look like theirs.
"""
from __future__ import annotations

import numpy as np

from hrnet_jax.data import registry
from hrnet_jax.data.errors import DataError

# The official Cityscapes colours by trainId: the registry's table (one copy).
CITYSCAPES = np.asarray(registry.CITYSCAPES_PALETTE, np.uint8)

IGNORE_COLOR = (0, 0, 0)


def voc_palette(n: int) -> np.ndarray:
  """(n, 3) uint8: the bits of the class index spread over R, G, B from the top bit."""
  palette = np.zeros((n, 3), np.uint8)
  for j in range(n):
    lab, i = j, 0
    while lab:
      for channel in range(3):
        palette[j, channel] |= ((lab >> channel) & 1) << (7 - i)
      i += 1
      lab >>= 3
  return palette


def get_palette(dataset: str | None, num_classes: int) -> np.ndarray:
  """(num_classes, 3) uint8 colours: the data registry's palette for `dataset`, else
  the official Cityscapes colours for 19 classes, else the VOC-style palette."""
  if dataset:
    try:
      palette = registry.get_dataset_info(dataset).palette
    except DataError:  # a name the registry does not know: a generic palette
      palette = None
    if palette is not None and len(palette) >= num_classes:
      return np.asarray(palette, np.uint8)[:num_classes]
  if num_classes == len(CITYSCAPES) and (not dataset or 'cityscapes' in dataset
                                         or 'synthetic' in dataset):
    return CITYSCAPES
  return voc_palette(num_classes)


def colorize(labels: np.ndarray, palette: np.ndarray, *, ignore_label: int = 255,
             ignore_color=IGNORE_COLOR) -> np.ndarray:
  """(H, W) class ids -> (H, W, 3) uint8; ignore and out-of-range ids get `ignore_color`."""
  labels = np.asarray(labels)
  palette = np.asarray(palette, np.uint8)
  valid = (labels >= 0) & (labels < len(palette)) & (labels != ignore_label)
  out = palette[np.where(valid, labels, 0)]
  out[~valid] = np.asarray(ignore_color, np.uint8)
  return out


def overlay(image: np.ndarray, labels: np.ndarray, palette: np.ndarray, *,
            alpha: float = 0.5, ignore_label: int = 255) -> np.ndarray:
  """Blends the colourised labels over an RGB uint8 image; ignore pixels show the image."""
  image = np.asarray(image, np.uint8)
  if image.shape[:2] != np.shape(labels):
    raise ValueError(f'image {image.shape[:2]} and labels {np.shape(labels)} must have '
                     'the same height and width.')
  colors = colorize(labels, palette, ignore_label=ignore_label).astype(np.float32)
  blend = (1.0 - alpha) * image.astype(np.float32) + alpha * colors
  labels = np.asarray(labels)
  valid = (labels >= 0) & (labels < len(palette)) & (labels != ignore_label)
  out = np.where(valid[..., None], np.round(blend), image.astype(np.float32))
  return out.astype(np.uint8)


def side_by_side(*pictures: np.ndarray, gap: int = 4) -> np.ndarray:
  """Concatenates RGB pictures of the same height with a white gap between them."""
  height = pictures[0].shape[0]
  parts = []
  for k, pic in enumerate(pictures):
    if pic.shape[0] != height:
      raise ValueError('side_by_side needs pictures of one height.')
    if k:
      parts.append(np.full((height, gap, 3), 255, np.uint8))
    parts.append(np.asarray(pic, np.uint8))
  return np.concatenate(parts, axis=1)


def stack_rows(rows, gap: int = 4) -> np.ndarray:
  """Stacks RGB pictures top to bottom, padded white to one width, white gaps between."""
  width = max(r.shape[1] for r in rows)
  padded = [np.pad(np.asarray(r, np.uint8), ((0, 0), (0, width - r.shape[1]), (0, 0)),
                   constant_values=255) for r in rows]
  out = [padded[0]]
  for r in padded[1:]:
    out += [np.full((gap, width, 3), 255, np.uint8), r]
  return np.concatenate(out, axis=0)

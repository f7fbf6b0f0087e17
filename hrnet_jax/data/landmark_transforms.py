"""Host-side transforms of the facial-landmark recipe (HRNet-Facial-Landmark-Detection,
lib/utils/transforms.py and lib/datasets/*.py).

The official crop is not one affine warp: it may shrink the image first, copies an
integer window, rotates it with PIL, and resizes it with PIL, through scipy.misc's
`imrotate` / `imresize`, which byte-scale a float image (its minimum -> 0, maximum ->
255: a per-crop contrast stretch) before PIL sees it. scipy.misc lost these functions in
SciPy 1.2, so `face_crop` re-creates them with PIL (bilinear, as the defaults there).
Landmarks use the official 3x3 `get_transform` and its int() truncations.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image

from hrnet_jax.data.keypoint_datasets import LANDMARK_FLIP_PAIRS, NUM_LANDMARKS  # pylint: disable=unused-import
from hrnet_jax.data.keypoint_transforms import PIXEL_STD, flip_permutation, paste_gaussian



def flip_landmarks(points: np.ndarray, image_width: int, flip_pairs) -> np.ndarray:
  """x -> W - x (no -1 in this code base) and left/right swapped."""
  points = np.array(points, np.float64)
  points[:, 0] = image_width - points[:, 0]
  return points[flip_permutation(len(points), flip_pairs)]


def get_transform(center, scale: float, output_size: Sequence[int], rotation: float = 0.0
                  ) -> np.ndarray:
  """The official 3x3 crop transform: image -> output pixels, rotated about the centre."""
  h = PIXEL_STD * float(scale)
  t = np.zeros((3, 3))
  t[0, 0] = float(output_size[1]) / h
  t[1, 1] = float(output_size[0]) / h
  t[0, 2] = output_size[1] * (-float(center[0]) / h + .5)
  t[1, 2] = output_size[0] * (-float(center[1]) / h + .5)
  t[2, 2] = 1
  if rotation != 0:
    r = np.deg2rad(-rotation)   # the official code negates to match the image rotation
    rot = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    move = np.eye(3)
    move[:2, 2] = [-output_size[1] / 2, -output_size[0] / 2]
    back = np.eye(3)
    back[:2, 2] = [output_size[1] / 2, output_size[0] / 2]
    t = back @ rot @ move @ t
  return t


def transform_pixel(point, center, scale: float, output_size: Sequence[int],
                    invert: bool = False, rotation: float = 0.0) -> np.ndarray:
  """1-based point -> 1-based point, truncated to whole pixels (official transform_pixel)."""
  t = get_transform(center, scale, output_size, rotation)
  if invert:
    t = np.linalg.inv(t)
  p = t @ np.array([point[0] - 1, point[1] - 1, 1.0])
  return p[:2].astype(int) + 1


def _bytescale(data: np.ndarray) -> np.ndarray:
  # scipy.misc.bytescale with its defaults: uint8 passes through; else min..max -> 0..255.
  if data.dtype == np.uint8:
    return data
  cmin, cmax = data.min(), data.max()
  span = cmax - cmin
  if span == 0:
    span = 1
  scaled = (data - cmin) * (255.0 / span)
  return (scaled.clip(0, 255) + 0.5).astype(np.uint8)


def _pil(data: np.ndarray) -> Image.Image:
  data = _bytescale(np.asarray(data))
  return Image.fromarray(np.ascontiguousarray(data), 'RGB' if data.ndim == 3 else 'L')


def pil_resize(data: np.ndarray, height: int, width: int) -> np.ndarray:
  """scipy.misc.imresize(data, (height, width)): byte-scale, PIL bilinear resize."""
  return np.asarray(_pil(data).resize((int(width), int(height)), Image.BILINEAR))


def pil_rotate(data: np.ndarray, angle: float) -> np.ndarray:
  """scipy.misc.imrotate(data, angle): byte-scale, PIL bilinear rotation about the
  centre, counter-clockwise for angle > 0, same size."""
  return np.asarray(_pil(data).rotate(angle, resample=Image.BILINEAR))


def face_crop(image: np.ndarray, center, scale: float, output_size: Sequence[int] = (256, 256),
              rotation: float = 0.0) -> np.ndarray:
  """The official `crop`: uint8 (H_out, W_out, C) from an image given as float32 RGB.

  Shrinks the image when the crop is at least twice the output, copies the integer
  window transform_pixel gives (padded for the rotation), rotates, resizes.
  """
  img = np.asarray(image)
  center = np.array(center, np.float64)
  ht, wd = img.shape[0], img.shape[1]
  sf = scale * PIXEL_STD / output_size[0]
  if sf >= 2:
    new_size = int(math.floor(max(ht, wd) / sf))
    new_ht, new_wd = int(math.floor(ht / sf)), int(math.floor(wd / sf))
    if new_size < 2:
      shape = tuple(output_size[:2]) + img.shape[2:]
      return np.zeros(shape, np.uint8)
    img = pil_resize(img, new_ht, new_wd)
    center = center / sf
    scale = scale / sf
  ul = transform_pixel([0, 0], center, scale, output_size, invert=True)
  br = transform_pixel(output_size, center, scale, output_size, invert=True)
  pad = int(np.linalg.norm(br - ul) / 2 - float(br[1] - ul[1]) / 2)
  if rotation != 0:
    ul, br = ul - pad, br + pad
  new = np.zeros([br[1] - ul[1], br[0] - ul[0]] + list(img.shape[2:]), np.float32)
  nx = max(0, -ul[0]), min(br[0], img.shape[1]) - ul[0]
  ny = max(0, -ul[1]), min(br[1], img.shape[0]) - ul[1]
  ox = max(0, ul[0]), min(img.shape[1], br[0])
  oy = max(0, ul[1]), min(img.shape[0], br[1])
  new[ny[0]:ny[1], nx[0]:nx[1]] = img[oy[0]:oy[1], ox[0]:ox[1]]
  if rotation != 0:
    new = pil_rotate(new, rotation)[pad:-pad, pad:-pad]
  return pil_resize(new, output_size[0], output_size[1])


def landmark_targets(points: np.ndarray, center, scale: float, heatmap_size: Sequence[int],
                     sigma: float, rotation: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
  """(L, H, W) float32 heatmaps and (L, 2) heatmap points (tpts) of the official loader.

  Only landmarks with y > 0 get a target: the point goes through get_transform (with the
  rotation) and is truncated to int before the Gaussian (peak 1, no weights) is drawn.
  """
  points = np.asarray(points, np.float64)
  target = np.zeros((len(points), heatmap_size[1], heatmap_size[0]), np.float32)
  tpts = points.copy()
  for i, p in enumerate(points):
    if p[1] > 0:
      tpts[i] = transform_pixel(p + 1, center, scale, heatmap_size, rotation=rotation)
      paste_gaussian(target[i], int(tpts[i][0] - 1), int(tpts[i][1] - 1), sigma)
  return target, tpts


def sample_landmark_augmentation(rng: np.random.Generator, *, scale_factor: float = 0.25,
                                 rotation_factor: float = 30.0, flip: bool = True
                                 ) -> tuple[float, float, bool]:
  """(scale multiplier U(1-sf, 1+sf), rotation U(-rf, rf) with probability 0.6 else 0,
  flip with probability 0.5)."""
  s = float(rng.uniform(1 - scale_factor, 1 + scale_factor))
  r = float(rng.uniform(-rotation_factor, rotation_factor)) if rng.random() <= 0.6 else 0.0
  return s, r, bool(flip and rng.random() <= 0.5)

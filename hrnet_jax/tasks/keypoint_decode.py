"""Heatmaps -> keypoints, as the official evaluation code decodes them.

Pose (deep-high-resolution-net.pytorch lib/core/inference.py, function.py): flip test
with the one-pixel shift, argmax, the quarter-pixel offset, transform back to the image.
Landmarks (HRNet-Facial-Landmark-Detection lib/core/evaluation.py): 1-based argmax,
quarter offset, +0.5, integer transform back.

Heatmaps are channels-last, (N, H, W, J), as the model outputs them.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from hrnet_jax.data.keypoint_transforms import PIXEL_STD, flip_permutation


def flip_back(heatmaps_of_flipped, flip_pairs: Sequence[Sequence[int]], shift: bool = True):
  """Heatmaps of the mirrored input -> heatmaps of the input (numpy or jax arrays).

  Mirror the width, swap left/right channels, then (official SHIFT_HEATMAP) move the
  map one pixel right: column 0 keeps its own value, the last column falls off.
  """
  num = heatmaps_of_flipped.shape[-1]
  out = heatmaps_of_flipped[:, :, ::-1, :][..., flip_permutation(num, flip_pairs)]
  if shift:
    lib = np if isinstance(out, np.ndarray) else _jnp()
    out = lib.concatenate([out[:, :, :1], out[:, :, :-1]], axis=2)
  return out


def _jnp():
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  return jnp


def get_max_preds(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(N, J, 2) argmax coordinates (x, y) and (N, J, 1) maxima; coordinates of maps whose
  maximum is <= 0 are zero (official get_max_preds)."""
  heatmaps = np.asarray(heatmaps)
  n, h, w, j = heatmaps.shape
  flat = np.moveaxis(heatmaps, -1, 1).reshape(n, j, h * w)
  idx = np.argmax(flat, axis=2)
  maxvals = np.max(flat, axis=2)[..., None]
  coords = np.stack([idx % w, idx // w], axis=-1).astype(np.float32)
  coords *= (maxvals > 0).astype(np.float32)
  return coords, maxvals


def quarter_offset(coords: np.ndarray, heatmaps: np.ndarray) -> np.ndarray:
  """Moves each coordinate 0.25 px toward the higher neighbour (TEST.POST_PROCESS).

  Only where the rounded peak has both neighbours strictly inside: 1 < px < W-1 and
  1 < py < H-1.
  """
  heatmaps = np.asarray(heatmaps)
  n, h, w, j = heatmaps.shape
  coords = np.array(coords, np.float32)
  px = np.floor(coords[..., 0] + 0.5).astype(np.int64)
  py = np.floor(coords[..., 1] + 0.5).astype(np.int64)
  inside = (px > 1) & (px < w - 1) & (py > 1) & (py < h - 1)
  b, k = np.meshgrid(np.arange(n), np.arange(j), indexing='ij')
  pxc, pyc = np.clip(px, 1, w - 2), np.clip(py, 1, h - 2)
  dx = heatmaps[b, pyc, pxc + 1, k] - heatmaps[b, pyc, pxc - 1, k]
  dy = heatmaps[b, pyc + 1, pxc, k] - heatmaps[b, pyc - 1, pxc, k]
  step = np.stack([np.sign(dx), np.sign(dy)], axis=-1) * 0.25
  return coords + np.where(inside[..., None], step, 0).astype(np.float32)


def heatmap_to_image(coords: np.ndarray, center: np.ndarray, scale: np.ndarray,
                     heatmap_size: Sequence[int]) -> np.ndarray:
  """Heatmap pixels -> image pixels (transform_preds, rotation 0): X = cx + (x - W/2) *
  200 s_w / W and Y = cy + (y - H/2) * 200 s_w / W (the width's factor for both).

  coords (N, J, 2); center, scale (N, 2); heatmap_size (W, H).
  """
  coords = np.asarray(coords, np.float64)
  center = np.asarray(center, np.float64)[:, None, :]
  factor = (np.asarray(scale, np.float64)[:, 0] * PIXEL_STD / heatmap_size[0])[:, None, None]
  half = np.array([heatmap_size[0] / 2, heatmap_size[1] / 2])
  return center + (coords - half) * factor


def pose_predictions(heatmaps: np.ndarray, center: np.ndarray, scale: np.ndarray,
                     post_process: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """get_final_preds: (N, J, 2) image coordinates and (N, J, 1) heatmap maxima."""
  heatmaps = np.asarray(heatmaps, np.float32)
  coords, maxvals = get_max_preds(heatmaps)
  if post_process:
    coords = quarter_offset(coords, heatmaps)
  h, w = heatmaps.shape[1:3]
  return heatmap_to_image(coords, center, scale, (w, h)), maxvals


def landmark_predictions(heatmaps: np.ndarray, center: np.ndarray, scale: np.ndarray
                         ) -> np.ndarray:
  """decode_preds of the facial-landmark code: (N, L, 2) whole-pixel image coordinates.

  The argmax peak (x0, y0), zeroed when its maximum is <= 0 (then the 1-based argmax is
  0 and no offset applies); 0.25 toward the higher neighbour when 1 <= x0, y0 <= W-2
  (the official 1-based test 1 < px < W); then +0.5 and
  int(c + (x0 + 0.5 - W/2) * 200 s / W) + 1 (int truncates toward zero). The scale is a
  scalar per face (s_x = s_y).
  """
  heatmaps = np.asarray(heatmaps, np.float32)
  n, h, w, j = heatmaps.shape
  flat = np.moveaxis(heatmaps, -1, 1).reshape(n, j, h * w)
  idx = np.argmax(flat, axis=2)
  positive = np.max(flat, axis=2) > 0
  one_based = np.stack([idx % w + 1, idx // w + 1], axis=-1).astype(np.float32)
  one_based *= positive[..., None]
  px, py = one_based[..., 0].astype(np.int64), one_based[..., 1].astype(np.int64)
  inside = (px > 1) & (px < w) & (py > 1) & (py < h)
  b, k = np.meshgrid(np.arange(n), np.arange(j), indexing='ij')
  x0, y0 = np.clip(px - 1, 1, w - 2), np.clip(py - 1, 1, h - 2)
  dx = heatmaps[b, y0, x0 + 1, k] - heatmaps[b, y0, x0 - 1, k]
  dy = heatmaps[b, y0 + 1, x0, k] - heatmaps[b, y0 - 1, x0, k]
  step = np.stack([np.sign(dx), np.sign(dy)], axis=-1) * 0.25
  coords = one_based + np.where(inside[..., None], step, 0) + 0.5
  center = np.asarray(center, np.float64)[:, None, :]
  size = np.asarray(scale, np.float64).reshape(n, -1)[:, :1, None] * PIXEL_STD
  # transform_pixel(invert): back to 0-based, through the inverse crop transform,
  # truncated to int, then 1-based again.
  image = center + (coords.astype(np.float64) - 1 - np.array([w / 2, h / 2])) * size / \
      np.array([w, h])
  return np.trunc(image) + 1

"""Host-side transforms of the human-pose recipe (deep-high-resolution-net.pytorch).

Every rule follows the official code (lib/dataset/coco.py, JointsDataset.py,
lib/utils/transforms.py); docs/keypoints.md lists them. Coordinates are pixels with the
official convention (0-based, pixel centres at integers). A person is a box turned into
a centre and a `scale` = (w, h) / 200 (the official `pixel_std`), both float arrays.

Sampling (`sample_pose_augmentation`) is kept apart from applying (`augment_person`), so
that a test can apply given parameters and compare with the official functions.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import cv2
import numpy as np

# Re-exported: the skeleton facts live with the registry entries (pure Python).
from hrnet_jax.data.keypoint_datasets import (  # pylint: disable=unused-import
    COCO_FLIP_PAIRS, COCO_UPPER_BODY, MPII_FLIP_PAIRS, MPII_UPPER_BODY)

PIXEL_STD = 200.0


def clean_box(box: Sequence[float], width: int, height: int) -> Optional[np.ndarray]:
  """The COCO loader's box sanitising: clip to the image; None when nothing is left.

  Matches coco.py: x2 = min(W-1, x1 + max(0, w-1)) (and y alike); kept if x2 >= x1 and
  y2 >= y1 (the caller also requires the annotation area > 0).
  """
  x, y, w, h = (float(v) for v in box)
  x1, y1 = max(0.0, x), max(0.0, y)
  x2 = min(width - 1.0, x1 + max(0.0, w - 1.0))
  y2 = min(height - 1.0, y1 + max(0.0, h - 1.0))
  if x2 < x1 or y2 < y1:
    return None
  return np.array([x1, y1, x2 - x1, y2 - y1], np.float64)


def _fix_aspect(w: float, h: float, aspect_ratio: float) -> tuple[float, float]:
  # Grow the short side so that w / h equals the input's aspect ratio (never shrink).
  if w > aspect_ratio * h:
    h = w / aspect_ratio
  elif w < aspect_ratio * h:
    w = h * aspect_ratio
  return w, h


def box_to_center_scale(box: Sequence[float], aspect_ratio: float, padding: float = 1.25
                        ) -> tuple[np.ndarray, np.ndarray]:
  """xywh box -> (centre, scale): aspect fixed to `aspect_ratio` = W_in / H_in, then
  scale = (w, h) / 200 x `padding` (1.25 for COCO boxes)."""
  x, y, w, h = (float(v) for v in box)
  center = np.array([x + w * 0.5, y + h * 0.5], np.float32)
  w, h = _fix_aspect(w, h, aspect_ratio)
  scale = np.array([w / PIXEL_STD, h / PIXEL_STD], np.float32)
  if center[0] != -1:   # the official guard for "no centre" entries
    scale = scale * padding
  return center, scale


def half_body_center_scale(joints: np.ndarray, visible: np.ndarray,
                           upper_body: Sequence[int], aspect_ratio: float, take_upper: bool
                           ) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
  """Centre and scale around the upper or lower body's visible joints (x1.5 padding).

  `take_upper` is the official `randn() < 0.5` draw. Upper is taken if drawn and it has
  more than 2 visible joints; else lower if it has more than 2; else upper. Fewer than
  2 joints in the choice: (None, None), the box is kept.
  """
  upper_set = set(int(i) for i in upper_body)
  vis = np.asarray(visible).reshape(len(joints), -1)[:, 0] > 0
  upper = [joints[j, :2] for j in range(len(joints)) if vis[j] and j in upper_set]
  lower = [joints[j, :2] for j in range(len(joints)) if vis[j] and j not in upper_set]
  if take_upper and len(upper) > 2:
    chosen = upper
  else:
    chosen = lower if len(lower) > 2 else upper
  if len(chosen) < 2:
    return None, None
  chosen = np.asarray(chosen, np.float32)
  center = chosen.mean(axis=0)
  w, h = (chosen.max(axis=0) - chosen.min(axis=0)).tolist()
  w, h = _fix_aspect(w, h, aspect_ratio)
  return center, np.array([w / PIXEL_STD, h / PIXEL_STD], np.float32) * 1.5


def flip_joints(joints: np.ndarray, visible: np.ndarray, image_width: int,
                flip_pairs: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
  """Mirror joints for a flipped image: x -> W - 1 - x, left/right swapped, invisible
  joints zeroed (fliplr_joints returns joints * vis)."""
  joints, visible = np.array(joints, np.float64), np.array(visible, np.float64)
  joints[:, 0] = image_width - joints[:, 0] - 1
  perm = flip_permutation(len(joints), flip_pairs)
  joints, visible = joints[perm], visible[perm]
  vis = visible.reshape(len(joints), -1)
  return joints * (vis if vis.shape[1] == joints.shape[1] else vis[:, :1]), visible


def flip_permutation(num: int, flip_pairs: Sequence[Sequence[int]]) -> np.ndarray:
  """Index array that swaps every pair (an involution): out[i] = in[perm[i]]."""
  perm = np.arange(num)
  for a, b in flip_pairs:
    perm[a], perm[b] = b, a
  return perm


def get_affine_transform(center, scale, rotation: float, output_size: Sequence[int],
                         inverse: bool = False) -> np.ndarray:
  """The 2x3 matrix of the official get_affine_transform (shift 0), in closed form.

  out = k R (p - c) + (W/2, H/2) with k = W / (200 s_w) (only the scale's width is
  used) and R = [[cos r, sin r], [-sin r, cos r]] (r in degrees; r > 0 turns the content
  counter-clockwise). `output_size` is (W, H). `inverse` maps output -> source.
  """
  cx, cy = float(center[0]), float(center[1])
  scale = np.broadcast_to(np.asarray(scale, np.float64), (2,))
  width, height = float(output_size[0]), float(output_size[1])
  k = width / (PIXEL_STD * float(scale[0]))
  r = np.deg2rad(float(rotation))
  cos, sin = np.cos(r), np.sin(r)
  if not inverse:
    a = k * np.array([[cos, sin], [-sin, cos]])
    t = np.array([width / 2, height / 2]) - a @ np.array([cx, cy])
  else:
    a = np.array([[cos, -sin], [sin, cos]]) / k
    t = np.array([cx, cy]) - a @ np.array([width / 2, height / 2])
  return np.concatenate([a, t[:, None]], axis=1)


def affine_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
  """(N, 2) points through a 2x3 affine matrix."""
  points = np.asarray(points, np.float64)
  return points @ matrix[:, :2].T + matrix[:, 2]


def warp(image: np.ndarray, matrix: np.ndarray, output_size: Sequence[int]) -> np.ndarray:
  """cv2.warpAffine with INTER_LINEAR and a zero border, as the official crop."""
  return cv2.warpAffine(image, matrix, (int(output_size[0]), int(output_size[1])),
                        flags=cv2.INTER_LINEAR)


def pose_targets(joints: np.ndarray, visible: np.ndarray, image_size: Sequence[int],
                 heatmap_size: Sequence[int], sigma: float
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Gaussian heatmaps (J, H_hm, W_hm) float32 and target_weight (J, 1) (generate_target).

  The peak sits on the integer pixel int(x / stride + 0.5) (truncation toward zero); the
  weight is the visibility, and 0 only when the whole 3-sigma window is off the map.
  """
  num = len(joints)
  wh, hh = int(heatmap_size[0]), int(heatmap_size[1])
  stride = np.asarray(image_size, np.float64) / np.asarray(heatmap_size, np.float64)
  weight = np.asarray(visible, np.float32).reshape(num, -1)[:, :1].copy()
  target = np.zeros((num, hh, wh), np.float32)
  for j in range(num):
    mu_x = int(joints[j][0] / stride[0] + 0.5)
    mu_y = int(joints[j][1] / stride[1] + 0.5)
    if not _window_overlaps(mu_x, mu_y, sigma, wh, hh):
      weight[j] = 0
      continue
    if weight[j] > 0.5:
      paste_gaussian(target[j], mu_x, mu_y, sigma)
  return target, weight


def _window_overlaps(px: int, py: int, sigma: float, width: int, height: int) -> bool:
  tmp = sigma * 3
  ul = int(px - tmp), int(py - tmp)
  br = int(px + tmp + 1), int(py + tmp + 1)
  return not (ul[0] >= width or ul[1] >= height or br[0] < 0 or br[1] < 0)


def paste_gaussian(heatmap: np.ndarray, px: int, py: int, sigma: float) -> bool:
  """Writes (in place) the official unnormalised Gaussian patch of `sigma` around the
  integer point (px, py); False (nothing written) when the window misses the map.

  The patch is arange(2*3sigma + 1) wide with its peak at index size // 2 and is placed
  at int(p - 3sigma): for a fractional 3sigma (sigma 1.5) and points near the border
  int() truncates toward zero, which moves the peak by one pixel, as in the official code.
  """
  height, width = heatmap.shape
  if not _window_overlaps(px, py, sigma, width, height):
    return False
  tmp = sigma * 3
  ul = int(px - tmp), int(py - tmp)
  br = int(px + tmp + 1), int(py + tmp + 1)
  size = 2 * tmp + 1
  axis = np.arange(0, size, 1, np.float32)
  centre = size // 2
  patch = np.exp(-((axis[None, :] - centre) ** 2 + (axis[:, None] - centre) ** 2)
                 / (2 * sigma ** 2))
  gx0, gx1 = max(0, -ul[0]), min(br[0], width) - ul[0]
  gy0, gy1 = max(0, -ul[1]), min(br[1], height) - ul[1]
  ix0, ix1 = max(0, ul[0]), min(br[0], width)
  iy0, iy1 = max(0, ul[1]), min(br[1], height)
  heatmap[iy0:iy1, ix0:ix1] = patch[gy0:gy1, gx0:gx1]
  return True


@dataclasses.dataclass(frozen=True)
class PoseAugmentation:
  """One draw of the training augmentation (JointsDataset.__getitem__)."""
  half_body: bool = False
  take_upper: bool = True
  scale_factor: float = 1.0
  rotation: float = 0.0
  flip: bool = False


def sample_pose_augmentation(rng: np.random.Generator, num_visible: int, *,
                             scale_factor: float = 0.35, rotation_factor: float = 45.0,
                             flip: bool = True, half_body_prob: float = 0.3,
                             half_body_min_joints: int = 8, rotation_prob: float = 0.6
                             ) -> PoseAugmentation:
  """Draws the official distributions: half body if more than `half_body_min_joints`
  visible and rand < 0.3 (upper if randn < 0.5); scale x clip(randn*sf + 1, 1-sf,
  1+sf); rotation clip(randn*rf, -2rf, 2rf) with probability 0.6; flip with 0.5."""
  half = num_visible > half_body_min_joints and rng.random() < half_body_prob
  take_upper = bool(rng.standard_normal() < 0.5) if half else True
  s = float(np.clip(rng.standard_normal() * scale_factor + 1,
                    1 - scale_factor, 1 + scale_factor))
  r = (float(np.clip(rng.standard_normal() * rotation_factor, -2 * rotation_factor,
                     2 * rotation_factor)) if rng.random() <= rotation_prob else 0.0)
  f = bool(flip and rng.random() <= 0.5)
  return PoseAugmentation(half, take_upper, s, r, f)


def augment_person(image: np.ndarray, joints: np.ndarray, visible: np.ndarray,
                   center: np.ndarray, scale: np.ndarray, aug: PoseAugmentation, *,
                   aspect_ratio: float, upper_body: Sequence[int],
                   flip_pairs: Sequence[Sequence[int]]):
  """Applies one draw in the official order: half body, scale, rotation, flip.

  Returns (image, joints, visible, center, scale, rotation); the image is the flipped
  one when flipping (the crop comes afterwards, from the returned centre and scale).
  """
  center = np.array(center, np.float32)
  scale = np.array(scale, np.float32)
  if aug.half_body:
    c, s = half_body_center_scale(joints, visible, upper_body, aspect_ratio, aug.take_upper)
    if c is not None:
      center, scale = c, s
  scale = scale * aug.scale_factor
  if aug.flip:
    image = image[:, ::-1]
    joints, visible = flip_joints(joints, visible, image.shape[1], flip_pairs)
    center[0] = image.shape[1] - center[0] - 1
  return image, joints, visible, center, scale, aug.rotation


def crop_person(image: np.ndarray, joints: np.ndarray, visible: np.ndarray,
                center: np.ndarray, scale: np.ndarray, rotation: float,
                image_size: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
  """The network input (H, W, 3) and the joints in its pixels (visible joints only)."""
  matrix = get_affine_transform(center, scale, rotation, image_size)
  crop = warp(np.ascontiguousarray(image), matrix, image_size)
  joints = np.array(joints, np.float64)
  vis = np.asarray(visible).reshape(len(joints), -1)[:, 0] > 0
  joints[vis, :2] = affine_points(joints[vis, :2], matrix)
  return crop, joints

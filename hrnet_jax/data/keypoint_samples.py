"""One person (or face) of a raw dataset example -> the arrays a keypoint model trains and
evaluates on, exactly as the official data loaders (JointsDataset.__getitem__ and the
facial-landmark datasets' __getitem__) make them. Numpy and OpenCV only.

Images come out uint8 RGB (the step normalises with the ImageNet mean and std, as the
official transforms do after /255); heatmaps channels-last (H, W, J) like the model.
"""
from __future__ import annotations

import dataclasses
import io
from typing import Any, Mapping, Optional

import cv2
import numpy as np

from hrnet_jax.data import keypoint_transforms as kt
from hrnet_jax.data import landmark_transforms as lt
from hrnet_jax.data.errors import DataError


@dataclasses.dataclass(frozen=True)
class PoseRecipe:
  """The pose recipe's data settings (lib/config yaml DATASET / MODEL sections)."""
  image_size: tuple[int, int] = (192, 256)      # (W, H)
  heatmap_size: tuple[int, int] = (48, 64)      # (W, H)
  sigma: float = 2.0
  flip_pairs: tuple[tuple[int, int], ...] = kt.COCO_FLIP_PAIRS
  upper_body: tuple[int, ...] = kt.COCO_UPPER_BODY
  scale_factor: float = 0.35
  rotation_factor: float = 45.0
  flip: bool = True
  half_body_prob: float = 0.3
  half_body_min_joints: int = 8
  box_padding: float = 1.25
  mpii: bool = False          # MPII's centre / scale rules and its flat annotation layout

  @property
  def aspect_ratio(self) -> float:
    return self.image_size[0] / self.image_size[1]


def decode_rgb(data: bytes, what: str) -> np.ndarray:
  """cv2 decoding (BGR -> RGB), as the pose code (IMREAD_COLOR | IGNORE_ORIENTATION)."""
  array = cv2.imdecode(np.frombuffer(data, np.uint8),
                       cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if len(data) else None
  if array is None:
    raise DataError(f'{what}: cannot decode the image ({len(data)} bytes); rebuild the dataset')
  return cv2.cvtColor(array, cv2.COLOR_BGR2RGB)


def people(example: Mapping[str, Any], recipe: PoseRecipe, num_joints: int,
           use_detections: bool = False) -> dict[str, np.ndarray]:
  """Every person of a raw example: centre, scale (N, 2), joints (N, J, 3) with z = 0,
  visibility (N, J, 3) in {0, 1} (vis, vis, 0), box score (N,)."""
  if recipe.mpii:
    centers = np.asarray(example['centers'], np.float64).reshape(-1, 2).copy()
    s = np.asarray(example['scales'], np.float64)
    scales = np.stack([s, s], axis=1)
    has = centers[:, 0] != -1
    # mpii.py: cy += 15 s and s x 1.25 (to keep the limbs), then 1-based -> 0-based.
    centers[has, 1] += 15 * scales[has, 1]
    scales[has] *= 1.25
    centers -= 1
    joints2 = np.asarray(example['joints'], np.float64).reshape(-1, num_joints, 2) - 1
    vis = np.asarray(example['joints_vis'], np.float64).reshape(-1, num_joints)
    n = len(centers)
    joints = np.zeros((n, num_joints, 3))
    joints[..., :2] = joints2
    visible = np.zeros((n, num_joints, 3))
    visible[..., 0] = visible[..., 1] = vis
    return {'center': centers, 'scale': scales, 'joints': joints, 'visible': visible,
            'score': np.ones(n)}
  key = 'det_boxes' if use_detections else 'boxes'
  boxes = np.asarray(example[key], np.float64).reshape(-1, 4)
  n = len(boxes)
  centers, scales = np.zeros((n, 2)), np.zeros((n, 2))
  for i, box in enumerate(boxes):
    c, s = kt.box_to_center_scale(box, recipe.aspect_ratio, recipe.box_padding)
    centers[i], scales[i] = c, s
  joints = np.zeros((n, num_joints, 3))
  visible = np.zeros((n, num_joints, 3))
  if use_detections:
    visible[..., :2] = 1      # the official detection records: all joints "visible"
    score = np.asarray(example['det_scores'], np.float64)
  else:
    kps = np.asarray(example['keypoints'], np.float64).reshape(n, num_joints, 3)
    joints[..., :2] = kps[..., :2]
    v = np.minimum(kps[..., 2], 1)
    visible[..., 0] = visible[..., 1] = v
    score = np.ones(n)
  return {'center': centers, 'scale': scales, 'joints': joints, 'visible': visible,
          'score': score}


def pose_train_sample(image: np.ndarray, person: Mapping[str, np.ndarray],
                      recipe: PoseRecipe, rng: np.random.Generator) -> dict[str, np.ndarray]:
  """One augmented person: image (H, W, 3) uint8, target (Hh, Wh, J), target_weight (J,)."""
  joints, visible = person['joints'], person['visible']
  aug = kt.sample_pose_augmentation(
      rng, int(np.sum(visible[:, 0])), scale_factor=recipe.scale_factor,
      rotation_factor=recipe.rotation_factor, flip=recipe.flip,
      half_body_prob=recipe.half_body_prob if recipe.upper_body else 0.0,
      half_body_min_joints=recipe.half_body_min_joints)
  image, joints, visible, center, scale, rot = kt.augment_person(
      image, joints, visible, person['center'], person['scale'], aug,
      aspect_ratio=recipe.aspect_ratio, upper_body=recipe.upper_body,
      flip_pairs=recipe.flip_pairs)
  return _crop_and_target(image, joints, visible, center, scale, rot, recipe)


def pose_eval_sample(image: np.ndarray, person: Mapping[str, np.ndarray],
                     recipe: PoseRecipe, with_target: bool = True) -> dict[str, np.ndarray]:
  """One person cropped without augmentation, with its centre, scale and box score."""
  out = _crop_and_target(image, person['joints'], person['visible'], person['center'],
                         person['scale'], 0.0, recipe, with_target)
  out.update(center=np.asarray(person['center'], np.float32),
             scale=np.asarray(person['scale'], np.float32),
             score=np.float32(person['score']))
  return out


def _crop_and_target(image, joints, visible, center, scale, rot, recipe, with_target=True):
  crop, joints = kt.crop_person(image, joints, visible, center, scale, rot, recipe.image_size)
  out = {'image': np.ascontiguousarray(crop, np.uint8)}
  if with_target:
    target, weight = kt.pose_targets(joints, visible, recipe.image_size, recipe.heatmap_size,
                                     recipe.sigma)
    out['target'] = np.ascontiguousarray(np.moveaxis(target, 0, -1))
    out['target_weight'] = weight[:, 0].astype(np.float32)
  return out


# ----------------------------------------------------------------------------
# Facial landmarks.
# ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class LandmarkRecipe:
  """HRNet-Facial-Landmark-Detection's data settings."""
  image_size: tuple[int, int] = (256, 256)
  heatmap_size: tuple[int, int] = (64, 64)
  sigma: float = 1.5
  flip_pairs: tuple[tuple[int, int], ...] = ()
  scale_factor: float = 0.25
  rotation_factor: float = 30.0
  flip: bool = True


def decode_pil_rgb(data: bytes, what: str) -> np.ndarray:
  """PIL decoding to float32 RGB, as the face datasets (Image.open(...).convert('RGB'))."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(io.BytesIO(data)) as pil:
      return np.array(pil.convert('RGB'), dtype=np.float32)
  except (OSError, SyntaxError) as e:
    raise DataError(f'{what}: cannot decode the image ({e}); rebuild the dataset') from e


def landmark_sample(example: Mapping[str, Any], recipe: LandmarkRecipe, what: str,
                    rng: Optional[np.random.Generator] = None) -> dict[str, np.ndarray]:
  """One face: image uint8 (256, 256, 3), target (64, 64, L) and, for evaluation, its
  centre, scale (x1.25 applied), ground-truth landmarks and AFLW box size."""
  image = decode_pil_rgb(example['image'], what)
  points = np.asarray(example['landmarks'], np.float64)
  center = np.asarray(example['center'], np.float64).copy()
  scale = float(example['scale']) * 1.25
  rot = 0.0
  if rng is not None:
    s, rot, flip = lt.sample_landmark_augmentation(
        rng, scale_factor=recipe.scale_factor, rotation_factor=recipe.rotation_factor,
        flip=recipe.flip)
    scale *= s
    if flip:
      image = image[:, ::-1]
      points = lt.flip_landmarks(points, image.shape[1], recipe.flip_pairs)
      center[0] = image.shape[1] - center[0]
  crop = lt.face_crop(image, center, scale, recipe.image_size, rot)
  target, _ = lt.landmark_targets(points, center, scale, recipe.heatmap_size, recipe.sigma,
                                  rot)
  out = {'image': np.ascontiguousarray(crop, np.uint8),
         'target': np.ascontiguousarray(np.moveaxis(target, 0, -1))}
  if rng is None:
    out.update(center=center.astype(np.float32), scale=np.float32(scale),
               landmarks=points.astype(np.float32),
               box_size=np.float32(example.get('box_size', 0.0)))
  return out

"""Keypoints on whole images for `python -m hrnet_jax.predict` with a pose or landmark
checkpoint: every given box (or the whole image as one box) is cropped as the official
evaluation crops people / faces, decoded as there, and drawn on the image.

  python -m hrnet_jax.predict --checkpoint=DIR photo.jpg --boxes=boxes.json --out=OUT

`boxes.json`: {"photo.jpg": [[x, y, w, h], ...], ...} (image file names as given);
images without boxes are one box. Writes OUT/<name>_skeleton.png (pose: COCO skeleton
for 17 joints, dots otherwise; landmarks: dots) and OUT/<name>_keypoints.json.
"""
from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np

from hrnet_jax.data import keypoint_transforms as kt
from hrnet_jax.data import landmark_transforms as lt
from hrnet_jax.data import stick_figures
from hrnet_jax.data.keypoint_datasets import COCO_FLIP_PAIRS
from hrnet_jax.tasks import keypoint_decode as kd


def _heatmaps(model, variables, crops: np.ndarray, flip_pairs, flip_test: bool):
  from hrnet_jax.tasks import keypoint_eval  # pylint: disable=g-import-not-at-top
  step = keypoint_eval.make_heatmap_step(model, tuple(flip_pairs), flip_test, True)
  return np.asarray(step(variables, crops))


def predict_pose(model, variables, image: np.ndarray, boxes: Sequence[Sequence[float]], *,
                 image_size=(192, 256), flip_pairs=COCO_FLIP_PAIRS, flip_test: bool = True
                 ) -> np.ndarray:
  """(N, J, 3) keypoints (x, y, heatmap maximum) of an RGB uint8 image, one per box."""
  crops, centers, scales = [], [], []
  for box in boxes:
    c, s = kt.box_to_center_scale(box, image_size[0] / image_size[1])
    crops.append(kt.warp(image, kt.get_affine_transform(c, s, 0, image_size), image_size))
    centers.append(c)
    scales.append(s)
  heat = _heatmaps(model, variables, np.stack(crops), flip_pairs if flip_test else (),
                   flip_test)
  coords, maxvals = kd.pose_predictions(heat, np.stack(centers), np.stack(scales))
  return np.concatenate([coords, maxvals], -1)


def predict_landmarks(model, variables, image: np.ndarray, boxes: Sequence[Sequence[float]],
                      *, image_size: int = 256) -> np.ndarray:
  """(N, L, 2) landmarks (official integer pixels, 1-based as the official decoding)."""
  crops, centers, scales = [], [], []
  for x, y, w, h in boxes:
    center = np.array([x + w / 2, y + h / 2])
    scale = max(w, h) / 200.0 * 1.25
    crops.append(lt.face_crop(image.astype(np.float32), center, scale,
                              (image_size, image_size)))
    centers.append(center)
    scales.append(scale)
  heat = _heatmaps(model, variables, np.stack(crops), (), False)
  return kd.landmark_predictions(heat, np.stack(centers), np.asarray(scales))


def draw(image: np.ndarray, keypoints: np.ndarray, threshold: float = 0.2) -> np.ndarray:
  """Skeletons (17 joints) or dots on a copy of the image."""
  out = image.copy()
  import cv2  # pylint: disable=g-import-not-at-top
  for person in keypoints:
    if person.shape[-1] == 2:   # landmarks: 1-based pixels
      for px, py in person - 1:
        cv2.circle(out, (int(px), int(py)), max(1, out.shape[0] // 200), (0, 255, 0), -1)
    elif len(person) == 17:
      out = stick_figures.draw_skeleton(out, person, (0, 255, 0), threshold)
    else:
      out = stick_figures.draw_skeleton(out, person, (0, 255, 0), threshold, skeleton=())
  return out


def predict_files(model, variables, head: str, paths: Sequence[str], out_dir: str, *,
                  boxes_file: str | None = None, image_size=None, flip_test: bool = True
                  ) -> list[str]:
  """Runs on every image file; returns the written picture paths."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  boxes = {}
  if boxes_file:
    with open(boxes_file) as f:
      boxes = json.load(f)
  os.makedirs(out_dir, exist_ok=True)
  written = []
  for path in paths:
    with Image.open(path) as pil:
      image = np.asarray(pil.convert('RGB'))
    h, w = image.shape[:2]
    these = boxes.get(os.path.basename(path), boxes.get(path)) or [[0, 0, w, h]]
    if head == 'pose':
      kps = predict_pose(model, variables, image, these, flip_test=flip_test,
                         image_size=tuple(image_size or (192, 256)))
    else:
      kps = predict_landmarks(model, variables, image, these,
                              image_size=int((image_size or (256,))[0]))
    name = os.path.splitext(os.path.basename(path))[0]
    picture = os.path.join(out_dir, f'{name}_skeleton.png')
    Image.fromarray(draw(image, kps)).save(picture)
    with open(os.path.join(out_dir, f'{name}_keypoints.json'), 'w') as f:
      json.dump({'boxes': [list(map(float, b)) for b in these],
                 'keypoints': np.asarray(kps, float).tolist()}, f)
    written.append(picture)
  return written

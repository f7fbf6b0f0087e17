"""`hrnet_synthetic_pose`: stick-figure people with the 17 COCO joints (no download).

Configs:
  default: 192x256 images with 1-3 people, 1200 train / 150 validation (quickstart_pose).
  tiny:    96x128 images, 16 train / 8 validation (tests).

Same features and metadata as `coco_keypoints` (one example per image, flat people
arrays; the validation ground truth in COCO format in the metadata), so the keypoint task
and COCOeval read both alike. Example i of a split is rendered from
`np.random.default_rng([seed, split_id, i])`: every build is bit-identical.
"""
from __future__ import annotations

import cv2
import numpy as np
import tensorflow_datasets as tfds

from hrnet_jax.data import coco_keypoints
from hrnet_jax.data import stick_figures

_SEED = 20_261_201
_SPLIT_IDS = {'train': 0, 'validation': 1}
COCO_JOINT_NAMES = ('nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder',
                    'right_shoulder', 'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist',
                    'left_hip', 'right_hip', 'left_knee', 'right_knee', 'left_ankle',
                    'right_ankle')
# COCO's skeleton as in its annotation files (1-based joint ids).
COCO_SKELETON_1BASED = [[a + 1, b + 1] for a, b in stick_figures.SKELETON]


class SyntheticPoseConfig(tfds.core.BuilderConfig):

  def __init__(self, *, height: int, width: int, num_train: int, num_validation: int,
               **kwargs):
    super().__init__(**kwargs)
    self.height, self.width = height, width
    self.split_sizes = {'train': num_train, 'validation': num_validation}


class HrnetSyntheticPose(tfds.core.GeneratorBasedBuilder):
  """Stick figures facing the camera, with occluders and overlapping people."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First version.'}
  BUILDER_CONFIGS = [
      SyntheticPoseConfig(name='default', description='192x256, 1200/150 images.',
                          height=192, width=256, num_train=1200, num_validation=150),
      SyntheticPoseConfig(name='tiny', description='96x128, 16/8 images, for tests.',
                          height=96, width=128, num_train=16, num_validation=8),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    h, w = self.builder_config.height, self.builder_config.width
    return self.dataset_info_from_configs(
        description='Procedural people with COCO keypoints.',
        features=coco_keypoints.people_features(
            tfds.features.Image(shape=(h, w, 3), encoding_format='png')),
        metadata=tfds.core.MetadataDict(),
        disable_shuffling=True,
        homepage='https://github.com/hrnet-jax',
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    cfg = self.builder_config
    out = {}
    for split, count in cfg.split_sizes.items():
      rendered = [render_example(split, i, cfg.height, cfg.width) for i in range(count)]
      self.info.metadata[split] = {
          'num_people': [len(r[1]) for r in rendered],
          'num_detections': [0] * count,
          'num_joints': 17, 'joint_names': list(COCO_JOINT_NAMES),
          'skeleton': COCO_SKELETON_1BASED, 'category_id': 1,
          'annotation_file': f'synthetic_{split}'}
      if split == 'validation':
        self.info.metadata[split]['ground_truth'] = ground_truth(
            [(i, cfg.height, cfg.width, people) for i, (_, people) in enumerate(rendered)])
      out[split] = self._generate_examples(split, rendered)
    return out

  def _generate_examples(self, split, rendered):
    for i, (image, people) in enumerate(rendered):
      ok, png = cv2.imencode('.png', cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                             [cv2.IMWRITE_PNG_COMPRESSION, 1])
      assert ok
      yield i, {
          'image': png.tobytes(), 'image_id': i, 'file_name': f'{split}_{i:05d}.png',
          'keypoints': np.array([p.keypoints for p in people], np.float32).reshape(-1),
          'boxes': np.array([p.box for p in people], np.float32).reshape(-1),
          'areas': np.array([p.area for p in people], np.float32),
          'ann_ids': np.arange(len(people), dtype=np.int64) + 1000 * i + 1,
          'det_boxes': np.zeros((0,), np.float32), 'det_scores': np.zeros((0,), np.float32)}


def render_example(split: str, index: int, height: int, width: int):
  rng = np.random.default_rng([_SEED, _SPLIT_IDS[split], index])
  return stick_figures.render_people(rng, height, width)


def ground_truth(images) -> dict:
  """COCO-format ground truth of [(image_id, height, width, people)]."""
  anns = []
  for image_id, _, _, people in images:
    for k, p in enumerate(people):
      anns.append({'id': 1000 * image_id + k + 1,  # COCOeval needs ids > 0
                   'image_id': image_id, 'category_id': 1,
                   'keypoints': [float(v) for v in p.keypoints.reshape(-1)],
                   'num_keypoints': int((p.keypoints[:, 2] > 0).sum()),
                   'area': float(p.area), 'iscrowd': 0,
                   'bbox': [float(v) for v in p.box]})
  return {'images': [{'id': i, 'height': h, 'width': w} for i, h, w, _ in images],
          'annotations': anns,
          'categories': [{'id': 1, 'name': 'person', 'supercategory': 'person',
                          'keypoints': list(COCO_JOINT_NAMES),
                          'skeleton': COCO_SKELETON_1BASED}]}

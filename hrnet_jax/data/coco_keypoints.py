"""`coco_keypoints`: COCO-format person keypoints (COCO 2017, or your own data) from the
annotation jsons and image zips, one example per image with all its people.

Configs and manual files:
  coco2017 (https://cocodataset.org/#download):
    annotations_trainval2017.zip -> annotations/person_keypoints_{train,val}2017.json
    train2017.zip, val2017.zip   -> {train,val}2017/<12-digit id>.jpg
    optional COCO_val2017_detections_AP_H_56_person.json (the official person boxes of
      deep-high-resolution-net.pytorch, person AP 56.4): stored with the validation
      images so that evaluation can use detector boxes (config.keypoints.use_gt_boxes).
  custom (any skeleton; flip pairs and OKS sigmas come from the config):
    keypoints_train.json, keypoints_val.json (COCO format, one category with keypoint
    names), images_train.zip, images_val.zip (images under their `file_name`, any folder),
    optional detections_val.json.

Examples are written in image-id order (integer keys, no shuffling) and the dataset
metadata records the number of people and detector boxes of every example, so a task
can index people without reading the images (`person_counts`).
"""
from __future__ import annotations

import os
import posixpath
import zipfile

import numpy as np
import tensorflow_datasets as tfds

from hrnet_jax.data import keypoint_annotations as ka
from hrnet_jax.data.errors import DataError
from hrnet_jax.data.sources import decode_image

DETECTIONS_2017 = 'COCO_val2017_detections_AP_H_56_person.json'


def people_features(image: tfds.features.Image) -> tfds.features.FeaturesDict:
  """The example of every keypoint builder: one image and all its people, as flat arrays.

  (P * J * 3,) keypoints x, y, visibility; (P * 4,) cleaned xywh boxes; (P,) areas and
  annotation ids; (D * 4,) detector boxes (not clipped) and (D,) scores, empty without
  a detection file. `example_people` reads them back per person.
  """
  vector = lambda dtype: tfds.features.Tensor(shape=(None,), dtype=dtype)
  return tfds.features.FeaturesDict({
      'image': image,
      'image_id': tfds.features.Scalar(np.int64),
      'file_name': tfds.features.Text(),
      'keypoints': vector(np.float32),
      'boxes': vector(np.float32),
      'areas': vector(np.float32),
      'ann_ids': vector(np.int64),
      'det_boxes': vector(np.float32),
      'det_scores': vector(np.float32),
  })


class CocoKeypointsConfig(tfds.core.BuilderConfig):
  """File names and category of one variant."""

  def __init__(self, *, jsons, zips, detections, category, **kwargs):
    super().__init__(**kwargs)
    self.jsons, self.zips, self.detections, self.category = jsons, zips, detections, category


class CocoKeypoints(tfds.core.GeneratorBasedBuilder):
  """People with keypoints, boxes and (validation) detector boxes, per image."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First version.'}
  BUILDER_CONFIGS = [
      CocoKeypointsConfig(
          name='coco2017', description='COCO 2017 person keypoints (17 joints).',
          jsons={'train': 'person_keypoints_train2017.json',
                 'validation': 'person_keypoints_val2017.json'},
          zips={'train': 'train2017.zip', 'validation': 'val2017.zip'},
          detections=DETECTIONS_2017, category='person'),
      CocoKeypointsConfig(
          name='custom', description='Your own COCO-format keypoint data.',
          jsons={'train': 'keypoints_train.json', 'validation': 'keypoints_val.json'},
          zips={'train': 'images_train.zip', 'validation': 'images_val.zip'},
          detections='detections_val.json', category=None),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description='COCO-format keypoints; flat per-image arrays (P people, J joints).',
        features=people_features(
            tfds.features.Image(shape=(None, None, 3), encoding_format='jpeg')),
        metadata=tfds.core.MetadataDict(),
        # Integer keys in image-id order: example i is the i-th image (person_index).
        disable_shuffling=True,
        homepage='https://cocodataset.org/#keypoints-2020',
    )

  def _split_generators(self, dl_manager):
    cfg = self.builder_config
    manual = dl_manager.manual_dir
    json_dir = manual
    if cfg.name == 'coco2017' and not os.path.exists(os.path.join(manual, cfg.jsons['train'])):
      json_dir = os.path.join(
          dl_manager.extract(os.path.join(manual, 'annotations_trainval2017.zip')),
          'annotations')
    splits = {}
    for split in ('train', 'validation'):
      json_path = os.path.join(json_dir, cfg.jsons[split])
      records, cat, ground_truth = ka.load_keypoint_json(
          json_path, category=cfg.category, keep_empty=split == 'validation')
      det_path = os.path.join(manual, cfg.detections)
      if split == 'validation' and os.path.exists(det_path):
        ka.attach_detections(records, det_path, category_id=cat['id'])
      self.info.metadata[split] = {
          'num_people': [int(len(r.boxes)) for r in records],
          'num_detections': [int(len(r.det_boxes)) for r in records],
          'num_joints': len(cat['keypoints']), 'joint_names': list(cat['keypoints']),
          'skeleton': cat.get('skeleton') or [], 'category_id': int(cat['id']),
          'annotation_file': cfg.jsons[split]}
      if split == 'validation':   # what COCOeval scores against, kept with the build
        self.info.metadata[split]['ground_truth'] = ground_truth
      splits[split] = self._generate_examples(records, os.path.join(manual, cfg.zips[split]),
                                              json_path)
    return splits

  def _generate_examples(self, records, zip_path: str, json_path: str):
    if not os.path.exists(zip_path):
      raise DataError(f'{zip_path}: image archive not found; put it in the manual dir')
    with zipfile.ZipFile(zip_path) as archive:
      by_name = {}
      for name in archive.namelist():
        by_name.setdefault(posixpath.basename(name), name)
      for index, rec in enumerate(records):
        what = f'{os.path.basename(json_path)} image {rec.image_id}'
        member = by_name.get(posixpath.basename(rec.file_name))
        if member is None:
          raise DataError(f'{what}: {rec.file_name} is not in {zip_path}; the image archive '
                          'does not match the annotation file (use the zip of this split)')
        data = archive.read(member)
        shape = decode_image(data, f'{zip_path}:{member}').shape
        if shape[:2] != (rec.height, rec.width):
          raise DataError(f'{what}: {member} is {shape[0]}x{shape[1]} but the annotation '
                          f'says {rec.height}x{rec.width}; the files do not belong together')
        yield index, {
            'image': data, 'image_id': rec.image_id, 'file_name': rec.file_name,
            'keypoints': rec.keypoints.reshape(-1), 'boxes': rec.boxes.reshape(-1),
            'areas': rec.areas, 'ann_ids': rec.ann_ids,
            'det_boxes': rec.det_boxes.reshape(-1), 'det_scores': rec.det_scores}


def person_counts(dataset_info, split: str, use_detections: bool = False) -> np.ndarray:
  """(people or detector boxes) per example of `split`, from the build's metadata."""
  meta = dataset_info.metadata[split]
  return np.asarray(meta['num_detections' if use_detections else 'num_people'], np.int64)


def person_index(counts: np.ndarray) -> np.ndarray:
  """(N, 2) (example index, person index) of every person, in example order."""
  counts = np.asarray(counts, np.int64)
  examples = np.repeat(np.arange(len(counts)), counts)
  starts = np.repeat(np.cumsum(counts) - counts, counts)
  return np.stack([examples, np.arange(len(examples)) - starts], axis=1)


def example_people(example: dict, num_joints: int, use_detections: bool = False) -> dict:
  """The flat arrays of one raw example as (P, J, 3) keypoints, (P, 4) boxes, (P,) scores."""
  if use_detections:
    boxes = np.asarray(example['det_boxes'], np.float32).reshape(-1, 4)
    return {'boxes': boxes, 'scores': np.asarray(example['det_scores'], np.float32),
            'keypoints': np.zeros((len(boxes), num_joints, 3), np.float32)}
  boxes = np.asarray(example['boxes'], np.float32).reshape(-1, 4)
  return {'boxes': boxes, 'scores': np.ones(len(boxes), np.float32),
          'keypoints': np.asarray(example['keypoints'], np.float32).reshape(-1, num_joints, 3),
          'areas': np.asarray(example['areas'], np.float32)}

"""Fake copies of the keypoint releases, laid out as the real ones, for tests.

COCO: annotations_trainval2017.zip (annotations/person_keypoints_{train,val}2017.json),
{train,val}2017.zip ({split}2017/<12-digit id>.jpg) and the person-detection json, with
stick-figure people (so a model can learn them) and the annotation details the loader
must handle: crowds, people without keypoints, boxes reaching past the border.
"""
from __future__ import annotations

import io
import json
import os
import zipfile

import cv2
import numpy as np

from hrnet_jax.data import stick_figures
from hrnet_jax.data.coco_keypoints import DETECTIONS_2017
from hrnet_jax.data.synthetic_keypoints import COCO_JOINT_NAMES, COCO_SKELETON_1BASED


def _jpeg(image_rgb: np.ndarray) -> bytes:
  ok, buf = cv2.imencode('.jpg', cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR),
                         [cv2.IMWRITE_JPEG_QUALITY, 95])
  assert ok
  return buf.tobytes()


def write_fake_coco_keypoints(manual_dir: str, *, images_per_split=None, height: int = 96,
                              width: int = 128, seed: int = 0, category: str = 'person',
                              box_outside: bool = False, missing_image: bool = False,
                              foreign_detections: bool = False) -> dict:
  """Writes the COCO keypoint files into `manual_dir`; returns
  {'train'|'val': {'json': dict, 'images': {image_id: RGB array}, 'detections': list}}.

  Args:
    category: name of the keypoint category ('dog' makes a file without people).
    box_outside: the first train annotation's box starts beyond the image's right edge.
    missing_image: the last val image is left out of val2017.zip.
    foreign_detections: the detection file also has a box of an image id not in val.
  """
  images_per_split = images_per_split or {'train': 4, 'val': 3}
  os.makedirs(manual_dir, exist_ok=True)
  rng = np.random.default_rng(seed)
  out = {}
  ann_id = 1
  annotations_zip = zipfile.ZipFile(os.path.join(manual_dir, 'annotations_trainval2017.zip'),
                                    'w')
  for split, count in images_per_split.items():
    images, anns, arrays = [], [], {}
    for i in range(count):
      image_id = 1000 * (1 if split == 'train' else 2) + 7 * i + 1
      image, people = stick_figures.render_people(rng, height, width)
      arrays[image_id] = image
      images.append({'id': image_id, 'file_name': f'{image_id:012d}.jpg', 'width': width,
                     'height': height})
      for k, person in enumerate(people):
        box = person.box.astype(float).tolist()
        if k == 0:   # reaches past the right edge: the loader clips it
          box[2] = width - box[0] + 5
        anns.append({'id': ann_id, 'image_id': image_id, 'category_id': 1, 'iscrowd': 0,
                     'bbox': box, 'area': person.area,
                     'num_keypoints': int((person.keypoints[:, 2] > 0).sum()),
                     'keypoints': person.keypoints.reshape(-1).tolist(), 'segmentation': []})
        ann_id += 1
      # A crowd and a person without keypoints: both skipped for training.
      anns.append({'id': ann_id, 'image_id': image_id, 'category_id': 1, 'iscrowd': 1,
                   'bbox': [1, 1, 20, 20], 'area': 300.0, 'num_keypoints': 0,
                   'keypoints': [0] * 51, 'segmentation': {'counts': [], 'size': [1, 1]}})
      anns.append({'id': ann_id + 1, 'image_id': image_id, 'category_id': 1, 'iscrowd': 0,
                   'bbox': [5, 5, 10, 30], 'area': 200.0, 'num_keypoints': 0,
                   'keypoints': [0] * 51, 'segmentation': []})
      ann_id += 2
    if box_outside and split == 'train':
      anns[0]['bbox'] = [width + 3.0, 10.0, 20.0, 30.0]
    dataset = {'info': {'description': 'fake COCO keypoints'}, 'licenses': [],
               'images': images, 'annotations': anns,
               'categories': [{'id': 1, 'name': category, 'supercategory': category,
                               'keypoints': list(COCO_JOINT_NAMES),
                               'skeleton': COCO_SKELETON_1BASED}]}
    annotations_zip.writestr(f'annotations/person_keypoints_{split}2017.json',
                             json.dumps(dataset))
    with zipfile.ZipFile(os.path.join(manual_dir, f'{split}2017.zip'), 'w') as z:
      for n, (image_id, image) in enumerate(arrays.items()):
        if missing_image and split == 'val' and n == len(arrays) - 1:
          continue
        z.writestr(f'{split}2017/{image_id:012d}.jpg', _jpeg(image))
    detections = []
    if split == 'val':
      for ann in anns:
        if ann['iscrowd'] or not ann['num_keypoints']:
          continue
        x, y, w, h = ann['bbox']
        jitter = rng.normal(0, 2, 4)
        detections.append({'image_id': ann['image_id'], 'category_id': 1,
                           'bbox': [x + jitter[0], y + jitter[1], w + jitter[2], h + jitter[3]],
                           'score': float(rng.uniform(0.5, 1.0))})
      detections.append({'image_id': images[0]['id'], 'category_id': 1,
                         'bbox': [2.0, 3.0, 30.0, 50.0], 'score': 0.1})
      detections.append({'image_id': images[0]['id'], 'category_id': 2,   # not a person
                         'bbox': [2.0, 3.0, 30.0, 50.0], 'score': 0.9})
      if foreign_detections:
        detections.append({'image_id': 999_999, 'category_id': 1,
                           'bbox': [1.0, 1.0, 9.0, 9.0], 'score': 0.9})
      with open(os.path.join(manual_dir, DETECTIONS_2017), 'w') as f:
        json.dump(detections, f)
    out[split] = {'json': dataset, 'images': arrays, 'detections': detections}
  annotations_zip.close()
  return out


def zip_bytes(files: dict[str, bytes]) -> bytes:
  buf = io.BytesIO()
  with zipfile.ZipFile(buf, 'w') as z:
    for name, data in files.items():
      z.writestr(name, data)
  return buf.getvalue()

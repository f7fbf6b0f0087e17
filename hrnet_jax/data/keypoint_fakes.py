"""Fake copies of the keypoint releases, laid out as the real ones, for tests.

MPII: the image tarball, the official repository's jsons and gt_valid.mat. Faces: each
set's image archive and csv files (COFW: its .mat files with grey and colour images).

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


def write_fake_mpii(manual_dir: str, *, images_per_split=None, seed: int = 0,
                    missing_image: bool = False) -> dict:
  """mpii_human_pose_v1.tar.gz (images/<name>.jpg), train.json, valid.json (the official
  repository's format, 1-based MATLAB pixels) and gt_valid.mat (pos_gt_src,
  headboxes_src, jnt_missing, dataset_joints) with random people."""
  import scipy.io  # pylint: disable=g-import-not-at-top
  import tarfile  # pylint: disable=g-import-not-at-top
  images_per_split = images_per_split or {'train': 3, 'valid': 2}
  os.makedirs(manual_dir, exist_ok=True)
  rng = np.random.default_rng(seed)
  out = {}
  with tarfile.open(os.path.join(manual_dir, 'mpii_human_pose_v1.tar.gz'), 'w:gz') as tar:
    for split, count in images_per_split.items():
      entries = []
      for i in range(count):
        name = f'{split}_{i:04d}.jpg'
        h, w = int(rng.integers(80, 120)), int(rng.integers(90, 140))
        data = _jpeg(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        if not (missing_image and split == 'valid' and i == count - 1):
          info = tarfile.TarInfo(f'images/{name}')
          info.size = len(data)
          tar.addfile(info, io.BytesIO(data))
        for _ in range(int(rng.integers(1, 3))):   # 1-2 people per image
          joints = rng.uniform(1, [w, h], (16, 2))
          vis = (rng.random(16) < 0.8).astype(int)
          entries.append({'joints_vis': vis.tolist(), 'joints': joints.tolist(),
                          'image': name, 'scale': float(rng.uniform(0.3, 0.6)),
                          'center': rng.uniform(20, [w - 20, h - 20]).tolist()})
      with open(os.path.join(manual_dir, f'{split}.json'), 'w') as f:
        json.dump(entries, f)
      out[split] = entries
  valid = out['valid']
  n = len(valid)
  tl = rng.uniform(5, 40, (n, 2))
  gt = {'pos_gt_src': np.transpose(np.array([e['joints'] for e in valid]), (1, 2, 0)),
        'headboxes_src': np.transpose(np.stack([tl, tl + rng.uniform(10, 30, (n, 2))], 1),
                                      (1, 2, 0)),
        'jnt_missing': 1 - np.array([e['joints_vis'] for e in valid]).T,
        'dataset_joints': np.array([['rank', 'rkne', 'rhip', 'lhip', 'lkne', 'lank', 'pelv',
                                     'thor', 'neck', 'head', 'rwri', 'relb', 'rsho', 'lsho',
                                     'lelb', 'lwri']], dtype=object)}
  scipy.io.savemat(os.path.join(manual_dir, 'gt_valid.mat'), gt)
  out['gt_valid'] = gt
  return out


def _face_rows(rng, num, w, h, aflw):
  points = rng.uniform([10, 10], [w - 10, h - 10], (num, 2))
  center = points.mean(axis=0)
  scale = float(np.ptp(points, axis=0).max() / 200)
  row = [scale] + ([float(rng.uniform(50, 90))] if aflw else []) + center.tolist()
  return row + points.reshape(-1).tolist()


def write_fake_faces(manual_dir: str, dataset: str, *, per_split: int = 2, seed: int = 0
                     ) -> dict:
  """The image archive and csv files (or COFW's .mat files) of one face dataset."""
  from hrnet_jax.data import face_landmarks as fl  # pylint: disable=g-import-not-at-top
  from hrnet_jax.data.keypoint_datasets import NUM_LANDMARKS  # pylint: disable=g-import-not-at-top
  os.makedirs(manual_dir, exist_ok=True)
  rng = np.random.default_rng(seed)
  num = NUM_LANDMARKS[dataset]
  out = {}
  if dataset == 'cofw':
    import scipy.io  # pylint: disable=g-import-not-at-top
    for split, (name, ikey, pkey) in fl.COFW_FILES.items():
      images = np.empty((per_split, 1), dtype=object)
      phis = np.zeros((per_split, 3 * num))
      for i in range(per_split):
        h, w = int(rng.integers(60, 90)), int(rng.integers(60, 90))
        grey = i % 2 == 1
        images[i, 0] = rng.integers(0, 256, (h, w) if grey else (h, w, 3), dtype=np.uint8)
        pts = rng.uniform(5, [w - 5, h - 5], (num, 2))
        phis[i, :2 * num] = pts.T.reshape(-1)
        phis[i, 2 * num:] = rng.integers(0, 2, num)
      scipy.io.savemat(os.path.join(manual_dir, name), {ikey: images, pkey: phis})
      out[split] = {'images': images[:, 0], 'phis': phis}
    return out
  archive = fl.IMAGE_ARCHIVES[dataset]
  files = {}
  for split in fl._CSV_SPLITS[dataset][:2]:  # pylint: disable=protected-access
    header = ['image_name', 'scale'] + (['box_size'] if dataset == 'aflw' else []) + \
        ['center_w', 'center_h'] + [f'{a}{k}' for k in range(num) for a in 'xy']
    lines = [','.join(header)]
    rows = []
    for i in range(per_split):
      rel = f'folder_{split}/sub/{i:03d}.jpg'
      h, w = int(rng.integers(70, 110)), int(rng.integers(70, 110))
      files[rel] = _jpeg(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
      values = _face_rows(rng, num, w, h, dataset == 'aflw')
      rows.append((rel, values))
      lines.append(','.join([rel] + [repr(float(v)) for v in values]))
    with open(os.path.join(manual_dir, fl.csv_name(dataset, split)), 'w') as f:
      f.write('\n'.join(lines) + '\n')
    out[split] = rows
  if archive.endswith('.zip'):
    with zipfile.ZipFile(os.path.join(manual_dir, archive), 'w') as z:
      for rel, data in files.items():
        z.writestr(f'images/{rel}', data)
  else:
    import tarfile  # pylint: disable=g-import-not-at-top
    with tarfile.open(os.path.join(manual_dir, archive), 'w:gz') as tar:
      for rel, data in files.items():
        info = tarfile.TarInfo(f'WFLW_images/{rel}')
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
  return out

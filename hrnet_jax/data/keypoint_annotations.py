"""COCO-format keypoint annotations and person-detection files, read and checked as the
official pose code reads them (lib/dataset/coco.py), without TensorFlow.

Any COCO-format keypoint json works (another skeleton, another joint count): the category
is chosen by name or as the only one with `keypoints`. Every problem is one `DataError`
line naming the file, the image or annotation, and what to do.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional

import numpy as np

from hrnet_jax.data.errors import DataError
from hrnet_jax.data.keypoint_transforms import clean_box


@dataclasses.dataclass
class ImageRecord:
  """One image and its people (ground truth) and detector boxes."""
  image_id: int
  file_name: str
  width: int
  height: int
  keypoints: np.ndarray        # (P, J, 3) x, y, visibility (0, 1, 2 as annotated)
  boxes: np.ndarray            # (P, 4) cleaned xywh (coco.py sanitising)
  areas: np.ndarray            # (P,) annotation areas
  ann_ids: np.ndarray          # (P,)
  det_boxes: np.ndarray = dataclasses.field(
      default_factory=lambda: np.zeros((0, 4), np.float32))
  det_scores: np.ndarray = dataclasses.field(
      default_factory=lambda: np.zeros((0,), np.float32))


def _load_json(path: str, what: str) -> Any:
  if not os.path.exists(path):
    raise DataError(f'{path}: {what} not found; put it in the manual dir')
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise DataError(f'{path}: cannot read {what} as json ({e}); re-download it') from e


def keypoint_category(dataset: dict, path: str, category: Optional[str]) -> dict:
  """The category whose people we read: `category` by name, or the only one with
  keypoint names."""
  cats = dataset.get('categories') or []
  if category is not None:
    found = [c for c in cats if c.get('name') == category]
    if not found:
      names = ', '.join(repr(c.get('name')) for c in cats) or 'none'
      raise DataError(f'{path}: no {category!r} category (categories: {names}); this is not '
                      f'a {category} keypoint file, or set the category of your own data')
    cat = found[0]
  else:
    with_kps = [c for c in cats if c.get('keypoints')]
    if len(with_kps) != 1:
      raise DataError(f'{path}: {len(with_kps)} categories list keypoint names; a keypoint '
                      'json needs exactly one (or name the category to use)')
    cat = with_kps[0]
  if not cat.get('keypoints'):
    raise DataError(f'{path}: category {cat.get("name")!r} has no keypoint names; '
                    'keypoint annotations need them')
  return cat


def _check_box_overlaps(box, width, height, what: str) -> None:
  x, y, w, h = (float(v) for v in box)
  if x >= width or y >= height or x + w <= 0 or y + h <= 0:
    raise DataError(f'{what}: box [{x:g}, {y:g}, {w:g}, {h:g}] lies outside the '
                    f'{width}x{height} image; fix or remove it')


_GT_FIELDS = ('id', 'image_id', 'category_id', 'keypoints', 'num_keypoints', 'area',
              'iscrowd', 'bbox')


def ground_truth_for_eval(dataset: dict, cat: dict) -> dict:
  """The part of an annotation file COCOeval reads for keypoints: every image, every
  annotation of the category (crowds and people without keypoints included: COCOeval
  ignores them itself), without segmentations."""
  anns = []
  for ann in dataset['annotations']:
    if ann.get('category_id') == cat['id']:
      entry = {k: ann[k] for k in _GT_FIELDS if k in ann}
      entry.setdefault('iscrowd', 0)
      entry.setdefault('num_keypoints', int(np.sum(np.asarray(ann['keypoints'])[2::3] > 0)))
      anns.append(entry)
  return {'images': [{k: im[k] for k in ('id', 'width', 'height', 'file_name') if k in im}
                     for im in dataset['images']],
          'annotations': anns,
          'categories': [{k: v for k, v in cat.items()}]}


def load_keypoint_json(path: str, *, category: Optional[str] = 'person',
                       keep_empty: bool = False) -> tuple[list[ImageRecord], dict, dict]:
  """Images with their people, sorted by image id; the chosen category; the ground truth
  COCOeval needs (`ground_truth_for_eval`).

  As coco.py: crowd annotations are dropped, boxes are sanitised (kept if area > 0 and
  the clipped box is not empty), people without any labelled keypoint are skipped.
  `keep_empty` keeps images without people (validation with detector boxes).
  """
  dataset = _load_json(path, 'the keypoint annotation file')
  if not isinstance(dataset, dict) or 'images' not in dataset or 'annotations' not in dataset:
    raise DataError(f'{path}: not a COCO-format annotation file (needs images, annotations, '
                    'categories)')
  cat = keypoint_category(dataset, path, category)
  num_joints = len(cat['keypoints'])
  images = {}
  for im in dataset['images']:
    images[int(im['id'])] = im
  people: dict[int, list] = {i: [] for i in images}
  for ann in dataset['annotations']:
    if ann.get('category_id') != cat['id'] or ann.get('iscrowd', 0):
      continue
    image_id = int(ann['image_id'])
    im = images.get(image_id)
    what = f'{path}: annotation {ann.get("id")} of image {image_id}'
    if im is None:
      raise DataError(f'{what}: the image is not listed in "images"; fix the file')
    kps = np.asarray(ann.get('keypoints') or [], np.float64)
    if kps.size != num_joints * 3:
      raise DataError(f'{what}: {kps.size} keypoint values, expected {num_joints} joints x 3 '
                      f'(category {cat["name"]!r})')
    _check_box_overlaps(ann['bbox'], im['width'], im['height'], what)
    box = clean_box(ann['bbox'], im['width'], im['height'])
    if box is None or ann.get('area', 0) <= 0 or kps.max() == 0:
      continue
    people[image_id].append((kps.reshape(num_joints, 3), box, float(ann['area']),
                             int(ann.get('id', -1))))
  records = []
  for image_id in sorted(images):
    im, persons = images[image_id], people[image_id]
    if not persons and not keep_empty:
      continue
    records.append(ImageRecord(
        image_id=image_id, file_name=im.get('file_name') or f'{image_id:012d}.jpg',
        width=int(im['width']), height=int(im['height']),
        keypoints=np.array([p[0] for p in persons], np.float32).reshape(-1, num_joints, 3),
        boxes=np.array([p[1] for p in persons], np.float32).reshape(-1, 4),
        areas=np.array([p[2] for p in persons], np.float32),
        ann_ids=np.array([p[3] for p in persons], np.int64)))
  return records, cat, ground_truth_for_eval(dataset, cat)


def attach_detections(records: list[ImageRecord], path: str, *, category_id: int = 1,
                      image_thre: float = 0.0) -> None:
  """Adds the person-detection boxes (list of {image_id, category_id, bbox, score}) to
  their images: category `category_id` and score >= `image_thre`; boxes are not clipped
  (as the official loader)."""
  detections = _load_json(path, 'the person-detection file')
  if not isinstance(detections, list):
    raise DataError(f'{path}: expected a list of detections '
                    '({image_id, category_id, bbox, score})')
  by_id = {r.image_id: r for r in records}
  unknown = sorted({int(d['image_id']) for d in detections} - set(by_id))
  if unknown:
    raise DataError(f'{path}: detections for {len(unknown)} image ids that the annotation '
                    f'file does not have (first: {unknown[0]}); use the detection file of '
                    'this split')
  boxes: dict[int, list] = {r.image_id: [] for r in records}
  for det in detections:
    if det.get('category_id') != category_id or det['score'] < image_thre:
      continue
    rec = by_id[int(det['image_id'])]
    _check_box_overlaps(det['bbox'], rec.width, rec.height,
                        f'{path}: detection of image {rec.image_id}')
    boxes[rec.image_id].append((det['bbox'], det['score']))
  for rec in records:
    rec.det_boxes = np.array([b for b, _ in boxes[rec.image_id]], np.float32).reshape(-1, 4)
    rec.det_scores = np.array([s for _, s in boxes[rec.image_id]], np.float32)


def read_zip_member(archive, name_candidates: list[str], what: str, zip_path: str) -> bytes:
  """Bytes of the first of `name_candidates` found in an open ZipFile."""
  for name in name_candidates:
    try:
      return archive.read(name)
    except KeyError:
      continue
  raise DataError(f'{what}: {name_candidates[0]} is not in {zip_path}; the image archive '
                  'does not match the annotation file (re-download it, or use the matching '
                  'split)')

"""Keypoint datasets: the COCO builder on fake release files (people, cleaned boxes,
detector boxes, the ground truth kept for COCOeval), the synthetic stick-figure set, and
one clear line for each kind of bad input."""
import json
import os

import numpy as np
import pytest

from hrnet_jax.data import DataError
from hrnet_jax.data import keypoint_annotations as ka
from hrnet_jax.data import keypoint_fakes
from hrnet_jax.data import registry
from hrnet_jax.data import sources


@pytest.fixture(scope='module')
def built(tmp_path_factory):
  root = tmp_path_factory.mktemp('kp')
  manual = str(root / 'manual')
  fake = keypoint_fakes.write_fake_coco_keypoints(manual)
  sources.build_datasets(['coco_keypoints', 'hrnet_synthetic_pose_tiny'],
                         data_dir=str(root / 'tfds'), manual_dir=manual)
  return root, fake


def _open(root, name, split):
  info = registry.get_dataset_info(name)
  return sources.open_split(info, split, data_dir=str(root / 'tfds'),
                            manual_dir=str(root / 'manual'))


def _expected_people(dataset, image):
  """coco.py's selection, written out: category 1, no crowd, cleaned box, area > 0,
  some keypoint labelled."""
  out = []
  for ann in dataset['annotations']:
    if ann['image_id'] != image['id'] or ann['iscrowd'] or max(ann['keypoints']) == 0:
      continue
    x, y, w, h = ann['bbox']
    x1, y1 = max(0, x), max(0, y)
    x2 = min(image['width'] - 1, x1 + max(0, w - 1))
    y2 = min(image['height'] - 1, y1 + max(0, h - 1))
    if ann['area'] > 0 and x2 >= x1 and y2 >= y1:
      out.append((ann['keypoints'], [x1, y1, x2 - x1, y2 - y1]))
  return out


@pytest.mark.slow
def test_coco_builder_people_boxes_and_detections(built):
  root, fake = built
  for split, key in (('train', 'train'), ('validation', 'val')):
    source = _open(root, 'coco_keypoints', split)
    dataset = fake[key]['json']
    meta = source.dataset_info.metadata[split]
    ids = [int(source[i]['image_id']) for i in range(len(source))]
    assert ids == sorted(im['id'] for im in dataset['images'])   # image-id order
    for i, image in enumerate(sorted(dataset['images'], key=lambda im: im['id'])):
      ex = source[i]
      people = _expected_people(dataset, image)
      assert meta['num_people'][i] == len(people)
      np.testing.assert_allclose(ex['keypoints'].reshape(-1, 17, 3),
                                 np.reshape([p[0] for p in people], (-1, 17, 3)), rtol=1e-6)
      np.testing.assert_allclose(ex['boxes'].reshape(-1, 4),
                                 np.reshape([p[1] for p in people], (-1, 4)), rtol=1e-5,
                                 atol=1e-4)
      # The stored image is the zip's JPEG, byte for byte.
      import cv2
      decoded = cv2.imdecode(np.frombuffer(ex['image'], np.uint8), cv2.IMREAD_COLOR)
      assert decoded.shape == (image['height'], image['width'], 3)
      if split == 'validation':
        dets = [d for d in fake['val']['detections']
                if d['image_id'] == image['id'] and d['category_id'] == 1]
        assert meta['num_detections'][i] == len(dets)
        np.testing.assert_allclose(ex['det_boxes'].reshape(-1, 4),
                                   np.reshape([d['bbox'] for d in dets], (-1, 4)),
                                   rtol=1e-5)   # not clipped
        np.testing.assert_allclose(ex['det_scores'], [d['score'] for d in dets], rtol=1e-6)
  gt = source.dataset_info.metadata['validation']['ground_truth']
  assert {im['id'] for im in gt['images']} == {im['id'] for im in fake['val']['json']['images']}
  assert len(gt['annotations']) == len(fake['val']['json']['annotations'])   # crowds too
  assert 'segmentation' not in gt['annotations'][0]


def test_synthetic_pose_set(built):
  root, _ = built
  source = _open(root, 'hrnet_synthetic_pose_tiny', 'validation')
  meta = source.dataset_info.metadata['validation']
  assert len(source) == 8 == len(meta['num_people'])
  total = 0
  for i in range(len(source)):
    ex = source[i]
    kps = ex['keypoints'].reshape(-1, 17, 3)
    boxes = ex['boxes'].reshape(-1, 4)
    assert len(kps) == meta['num_people'][i] >= 1
    total += len(kps)
    vis = kps[..., 2]
    assert set(np.unique(vis)) <= {0, 1, 2}
    inside = vis > 0
    # Labelled joints lie in the image; the box covers the drawn figure.
    assert (kps[..., 0][inside] >= 0).all() and (kps[..., 0][inside] < 128).all()
    assert (boxes[:, 2:] > 0).all()
  assert total == len(meta['ground_truth']['annotations'])
  assert sum(meta['num_people']) == total


# ----------------------------------------------------------------------------
# Bad input: one DataError line each.
# ----------------------------------------------------------------------------
def _one_line(err):
  text = str(err.value)
  assert '\n' not in text
  return text


def test_json_without_person_category(tmp_path):
  keypoint_fakes.write_fake_coco_keypoints(str(tmp_path), category='dog')
  import zipfile
  with zipfile.ZipFile(tmp_path / 'annotations_trainval2017.zip') as z:
    z.extract('annotations/person_keypoints_val2017.json', tmp_path)
  path = str(tmp_path / 'annotations' / 'person_keypoints_val2017.json')
  with pytest.raises(DataError) as err:
    ka.load_keypoint_json(path)
  assert "no 'person' category (categories: 'dog')" in _one_line(err)


def test_box_outside_the_image(tmp_path):
  fake = keypoint_fakes.write_fake_coco_keypoints(str(tmp_path), box_outside=True)
  path = tmp_path / 'train.json'
  path.write_text(json.dumps(fake['train']['json']))
  with pytest.raises(DataError) as err:
    ka.load_keypoint_json(str(path))
  text = _one_line(err)
  assert 'annotation 1 of image 1001' in text and 'lies outside the 128x96 image' in text


def test_detections_for_other_images(tmp_path):
  fake = keypoint_fakes.write_fake_coco_keypoints(str(tmp_path), foreign_detections=True)
  path = tmp_path / 'val.json'
  path.write_text(json.dumps(fake['val']['json']))
  records, _, _ = ka.load_keypoint_json(str(path), keep_empty=True)
  det = str(tmp_path / 'COCO_val2017_detections_AP_H_56_person.json')
  with pytest.raises(DataError) as err:
    ka.attach_detections(records, det)
  assert 'detections for 1 image ids that the annotation file does not have (first: 999999)' \
      in _one_line(err)


@pytest.mark.slow
def test_image_missing_from_the_zip_fails_the_build(tmp_path):
  """Through the real path: child build process -> DataError back here."""
  keypoint_fakes.write_fake_coco_keypoints(str(tmp_path / 'manual'), missing_image=True)
  with pytest.raises(DataError) as err:
    sources.build_datasets(['coco_keypoints'], data_dir=str(tmp_path / 'tfds'),
                           manual_dir=str(tmp_path / 'manual'))
  text = _one_line(err)
  assert 'person_keypoints_val2017.json image 2015' in text
  assert '000000002015.jpg is not in' in text and 'val2017.zip' in text

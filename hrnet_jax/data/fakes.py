"""Fake copies of the manual-download archives, laid out exactly as the real releases.

For tests (ours and other parts': a real builder runs on them end to end) and for the
input-pipeline benchmark. Labels are random blocks of valid label values and the image
colour is a function of the label (unless `textured`), so a test can derive the label from
the image after any augmentation.
"""
from __future__ import annotations

import io
import json
import os
import zipfile

import cv2
import numpy as np

# Every Cityscapes labelId (0..33); the ids outside CITYSCAPES_LABEL_TO_TRAIN_ID are void.
CITYSCAPES_LABEL_IDS = tuple(range(34))
# Quality 100 without chroma subsampling: flat colour blocks survive almost exactly.
_JPEG_444 = [cv2.IMWRITE_JPEG_QUALITY, 100, cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
             cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
_CITIES = {'train': ('aachen', 'bochum'), 'val': ('frankfurt',), 'test': ('berlin',)}


def label_colours(n: int, seed: int = 0) -> np.ndarray:
  """(n, 3) distinct RGB colours, far apart so that interior pixels identify the label."""
  rng = np.random.default_rng(seed)
  grid = np.stack(np.meshgrid(*[np.arange(20, 256, 40)] * 3, indexing='ij'), -1).reshape(-1, 3)
  return grid[rng.permutation(len(grid))[:n]].astype(np.uint8)


def block_labels(rng: np.random.Generator, height: int, width: int, values, block: int
                 ) -> np.ndarray:
  blocks = rng.choice(np.asarray(values, np.uint8), (-(-height // block), -(-width // block)))
  return np.kron(blocks, np.ones((block, block), np.uint8))[:height, :width]


def textured_image(rng: np.random.Generator, label: np.ndarray, colours: np.ndarray
                   ) -> np.ndarray:
  """Photo-like RGB: label colours with smooth shading and sensor noise (PNGs of ~2.5 MB at
  1024x2048, like the real leftImg8bit files, so decoding costs what it costs there)."""
  h, w = label.shape
  image = colours[label].astype(np.float32)
  shade = cv2.resize(rng.standard_normal((h // 32, w // 32), dtype=np.float32), (w, h),
                     interpolation=cv2.INTER_CUBIC)
  image *= (1.0 + 0.2 * shade)[..., None]
  image += 1.5 * rng.standard_normal((h, w, 1), dtype=np.float32)
  return np.clip(image, 0, 255).astype(np.uint8)


def _png(array: np.ndarray) -> bytes:
  if array.ndim == 3:
    array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
  ok, buf = cv2.imencode('.png', array)
  assert ok
  return buf.tobytes()


def write_fake_cityscapes(manual_dir: str, *, images_per_split=None, height: int = 1024,
                          width: int = 2048, block: int = 64, textured: bool = False,
                          corrupt: tuple[str, ...] = (), mismatched: tuple[str, ...] = (),
                          seed: int = 0) -> dict[str, dict]:
  """Writes leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip into `manual_dir`.

  Layout as the real zips: `leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png`
  and `gtFine/<split>/<city>/<id>_gtFine_{labelIds,color,instanceIds}.png` + `_polygons.json`,
  with README and license.txt at the top. The catalog builder requires 1024x2048 images.

  Args:
    corrupt: image ids whose image PNG is truncated garbage.
    mismatched: image ids whose label is smaller than the image.

  Returns:
    {image_id: {'split', 'label_ids' (h, w) uint8, 'image' (h, w, 3) uint8 RGB}}.
  """
  images_per_split = images_per_split or {'train': 2, 'val': 1, 'test': 1}
  os.makedirs(manual_dir, exist_ok=True)
  rng = np.random.default_rng(seed)
  colours = label_colours(len(CITYSCAPES_LABEL_IDS), seed)
  examples = {}
  left_path = os.path.join(manual_dir, 'leftImg8bit_trainvaltest.zip')
  gt_path = os.path.join(manual_dir, 'gtFine_trainvaltest.zip')
  with zipfile.ZipFile(left_path, 'w', zipfile.ZIP_STORED) as left, \
       zipfile.ZipFile(gt_path, 'w', zipfile.ZIP_STORED) as gt:
    for z in (left, gt):
      z.writestr('README', 'The Cityscapes Dataset (fake copy for tests).\n')
      z.writestr('license.txt', 'Fake data.\n')
    for split, count in images_per_split.items():
      cities = _CITIES[split]
      for i in range(count):
        city = cities[i % len(cities)]
        image_id = f'{city}_{i:06d}_{19 + i:06d}'
        labels = block_labels(rng, height, width, CITYSCAPES_LABEL_IDS, block)
        image = (textured_image(rng, labels, colours) if textured else colours[labels])
        image_png = _png(image)
        if image_id in corrupt:
          image_png = image_png[:len(image_png) // 3][::-1]
        label_png = _png(labels[:height // 2] if image_id in mismatched else labels)
        folder = f'{split}/{city}'
        left.writestr(f'leftImg8bit/{folder}/{image_id}_leftImg8bit.png', image_png)
        gt.writestr(f'gtFine/{folder}/{image_id}_gtFine_labelIds.png', label_png)
        gt.writestr(f'gtFine/{folder}/{image_id}_gtFine_instanceIds.png',
                    _png(labels.astype(np.uint16) * 1000))
        gt.writestr(f'gtFine/{folder}/{image_id}_gtFine_color.png', _png(colours[labels]))
        gt.writestr(f'gtFine/{folder}/{image_id}_gtFine_polygons.json',
                    json.dumps({'imgHeight': height, 'imgWidth': width, 'objects': []}))
        examples[image_id] = {'split': split, 'label_ids': labels, 'image': image}
  return examples


def write_fake_lip(manual_dir: str, *, images_per_split=None, seed: int = 0,
                   corrupt: tuple[str, ...] = (), mismatched: tuple[str, ...] = ()
                   ) -> dict[str, dict]:
  """TrainVal_images.zip + TrainVal_parsing_annotations.zip as the LIP release.

  `TrainVal_images/{train,val}_images/<id>.jpg`, `TrainVal_images/{train,val}_id.txt`,
  `TrainVal_parsing_annotations/{train,val}_segmentations/<id>.png` (values 0..19).
  Images: label colours as JPEG at quality 100, 4:4:4 (near lossless for flat blocks).
  """
  images_per_split = images_per_split or {'train': 3, 'val': 2}
  os.makedirs(manual_dir, exist_ok=True)
  rng = np.random.default_rng(seed)
  colours = label_colours(20, seed)
  examples = {}
  with zipfile.ZipFile(os.path.join(manual_dir, 'TrainVal_images.zip'), 'w') as zi, \
       zipfile.ZipFile(os.path.join(manual_dir, 'TrainVal_parsing_annotations.zip'),
                       'w') as za:
    for split, count in images_per_split.items():
      ids = []
      for i in range(count):
        image_id = f'{100000 + 7 * i + (0 if split == "train" else 3)}_{i:06d}'
        h, w = int(rng.integers(60, 120)), int(rng.integers(40, 100))
        labels = block_labels(rng, h, w, range(20), 8)
        image = colours[labels]
        ok, jpg = cv2.imencode('.jpg', cv2.cvtColor(image, cv2.COLOR_RGB2BGR), _JPEG_444)
        assert ok
        data = jpg.tobytes()
        if image_id in corrupt:
          data = data[:len(data) // 3][::-1]
        zi.writestr(f'TrainVal_images/{split}_images/{image_id}.jpg', data)
        za.writestr(f'TrainVal_parsing_annotations/{split}_segmentations/{image_id}.png',
                    _png(labels[:, :w // 2] if image_id in mismatched else labels))
        ids.append(image_id)
        examples[image_id] = {'split': split, 'label': labels, 'image': image}
      zi.writestr(f'TrainVal_images/{split}_id.txt', '\n'.join(ids) + '\n')
  return examples


def write_fake_pascal_context(manual_dir: str, *, images_per_split=None, seed: int = 0
                              ) -> dict[str, dict]:
  """VOCtrainval_03-May-2010.tar (JPEGImages + ImageSets/Main/{train,val}.txt) and
  trainval.tar.gz (trainval/<id>.mat with a 459-class `LabelMap`), as the releases."""
  import tarfile  # pylint: disable=g-import-not-at-top
  import scipy.io  # pylint: disable=g-import-not-at-top
  from hrnet_jax.data.registry import PASCAL_CONTEXT_459_IDS  # pylint: disable=g-import-not-at-top
  images_per_split = images_per_split or {'train': 3, 'val': 2}
  os.makedirs(manual_dir, exist_ok=True)
  rng = np.random.default_rng(seed)
  # Some of the 59 classes, background (0) and rare classes (absorbed into background).
  values = (0, 1, 3, 100, 401) + PASCAL_CONTEXT_459_IDS[:20]
  examples = {}

  def add(tar, name, payload):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))

  with tarfile.open(os.path.join(manual_dir, 'VOCtrainval_03-May-2010.tar'), 'w') as voc, \
       tarfile.open(os.path.join(manual_dir, 'trainval.tar.gz'), 'w:gz') as ctx:
    for split, count in images_per_split.items():
      ids = []
      for i in range(count):
        image_id = f'2008_{i * 2 + (0 if split == "train" else 1):06d}'
        h, w = int(rng.integers(50, 90)), int(rng.integers(50, 90))
        labels = block_labels(rng, h, w, range(len(values)), 8)
        label_map = np.asarray(values, np.uint16)[labels]
        image = (labels.astype(np.uint8) * 9 + 20)[..., None].repeat(3, 2)
        ok, jpg = cv2.imencode('.jpg', image, _JPEG_444)
        assert ok
        add(voc, f'VOCdevkit/VOC2010/JPEGImages/{image_id}.jpg', jpg.tobytes())
        mat = io.BytesIO()
        scipy.io.savemat(mat, {'LabelMap': label_map})
        add(ctx, f'trainval/{image_id}.mat', mat.getvalue())
        ids.append(image_id)
        examples[image_id] = {'split': split, 'label_map': label_map, 'image': image}
      add(voc, f'VOCdevkit/VOC2010/ImageSets/Main/{split}.txt',
          ('\n'.join(ids) + '\n').encode())
  return examples


def write_fake_ade20k(manual_dir: str, *, images_per_split=None, seed: int = 0
                      ) -> dict[str, dict]:
  """ADEChallengeData2016.zip: images/{training,validation}/ADE_*.jpg, annotations/...png."""
  images_per_split = images_per_split or {'training': 3, 'validation': 2}
  os.makedirs(manual_dir, exist_ok=True)
  rng = np.random.default_rng(seed)
  examples = {}
  with zipfile.ZipFile(os.path.join(manual_dir, 'ADEChallengeData2016.zip'), 'w') as z:
    z.writestr('ADEChallengeData2016/objectInfo150.txt', 'Idx\tRatio\tTrain\tVal\tName\n')
    z.writestr('ADEChallengeData2016/sceneCategories.txt', '')
    for folder, count in images_per_split.items():
      for i in range(count):
        image_id = f'ADE_{"train" if folder == "training" else "val"}_{i + 1:08d}'
        h, w = int(rng.integers(50, 100)), int(rng.integers(50, 100))
        labels = block_labels(rng, h, w, (0, 1, 2, 13, 77, 150), 8)
        image = np.repeat((labels.astype(np.float32) * 1.5 + 10).astype(np.uint8)[..., None],
                          3, axis=2)
        ok, jpg = cv2.imencode('.jpg', image, _JPEG_444)
        assert ok
        z.writestr(f'ADEChallengeData2016/images/{folder}/{image_id}.jpg', jpg.tobytes())
        z.writestr(f'ADEChallengeData2016/annotations/{folder}/{image_id}.png', _png(labels))
        examples[image_id] = {'split': folder, 'label': labels, 'image': image}
  return examples


def write_fake_imagenet(manual_dir: str, *, wnids=('n01440764', 'n01443537', 'n01484850'),
                        per_class: int = 2, num_val: int = 3, seed: int = 0
                        ) -> dict[str, dict]:
  """ILSVRC2012_img_train.tar (one inner <wnid>.tar per class) and ILSVRC2012_img_val.tar
  (ILSVRC2012_val_<n>.JPEG; TFDS labels them from its validation_labels.txt)."""
  import tarfile  # pylint: disable=g-import-not-at-top
  os.makedirs(manual_dir, exist_ok=True)
  rng = np.random.default_rng(seed)
  examples = {}

  def jpeg():
    h, w = int(rng.integers(40, 90)), int(rng.integers(40, 90))
    image = cv2.resize(rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8),
                       (w, h), interpolation=cv2.INTER_CUBIC)
    ok, buf = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()

  def add(tar, name, payload):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))

  with tarfile.open(os.path.join(manual_dir, 'ILSVRC2012_img_train.tar'), 'w') as outer:
    for wnid in wnids:
      inner = io.BytesIO()
      with tarfile.open(fileobj=inner, mode='w') as tar:
        for i in range(per_class):
          name = f'{wnid}_{i + 1}.JPEG'
          payload = jpeg()
          add(tar, name, payload)
          examples[name] = {'split': 'train', 'wnid': wnid, 'jpeg': payload}
      add(outer, f'{wnid}.tar', inner.getvalue())
  with tarfile.open(os.path.join(manual_dir, 'ILSVRC2012_img_val.tar'), 'w') as tar:
    for i in range(num_val):
      name = f'ILSVRC2012_val_{i + 1:08d}.JPEG'
      payload = jpeg()
      add(tar, name, payload)
      examples[name] = {'split': 'validation', 'jpeg': payload}
  return examples

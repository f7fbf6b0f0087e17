"""`mpii_pose`: MPII Human Pose, with the annotation jsons of deep-high-resolution-net.pytorch,
one example per image with all its people.

Manual files:
  mpii_human_pose_v1.tar.gz  (http://human-pose.mpi-inf.mpg.de/, images/<name>.jpg)
  train.json, valid.json, gt_valid.mat  (the official repository's data/mpii/annot/)
Per person: the json's centre, scale (scalar) and 16 joints + visibility, as released
(1-based MATLAB pixels; the task applies coco-style rules: cy += 15 s, s x 1.25, -1).
Validation people also carry their row of gt_valid.mat (pos_gt_src, headboxes_src,
jnt_missing) and their position in valid.json, for the official PCKh.
"""
from __future__ import annotations

import json
import os

import numpy as np
import tensorflow_datasets as tfds

from hrnet_jax.data.errors import DataError
from hrnet_jax.data.sources import decode_image

_SPLITS = {'train': 'train.json', 'validation': 'valid.json'}


def load_mpii_json(path: str) -> dict[str, list[tuple[int, dict]]]:
  """{image name: [(index in the file, entry)]} of an official MPII annotation json."""
  if not os.path.exists(path):
    raise DataError(f'{path}: MPII annotation file not found; put it in the manual dir')
  try:
    with open(path) as f:
      entries = json.load(f)
  except ValueError as e:
    raise DataError(f'{path}: not a json file ({e}); re-download it') from e
  images: dict[str, list] = {}
  for i, a in enumerate(entries):
    for key in ('image', 'center', 'scale', 'joints', 'joints_vis'):
      if key not in a:
        raise DataError(f'{path}: entry {i} has no {key!r}; not an MPII annotation file of '
                        'the official pose repository')
    if np.shape(a['joints']) != (16, 2) or np.shape(a['joints_vis']) != (16,):
      raise DataError(f'{path}: entry {i} ({a["image"]}) does not have 16 joints')
    images.setdefault(a['image'], []).append((i, a))
  return images


def load_gt_valid(path: str, num_people: int) -> dict[str, np.ndarray]:
  """gt_valid.mat as per-person arrays: gt (N, 16, 2), headboxes (N, 2, 2), missing (N, 16)."""
  import scipy.io  # pylint: disable=g-import-not-at-top
  try:
    mat = scipy.io.loadmat(path)
    out = {'gt': np.transpose(mat['pos_gt_src'], (2, 0, 1)),
           'headboxes': np.transpose(mat['headboxes_src'], (2, 0, 1)),
           'missing': np.transpose(mat['jnt_missing'], (1, 0))}
  except (OSError, ValueError, KeyError) as e:
    raise DataError(f'{path}: cannot read pos_gt_src / headboxes_src / jnt_missing ({e!r}); '
                    're-download gt_valid.mat') from e
  if len(out['gt']) != num_people:
    raise DataError(f'{path}: {len(out["gt"])} people but valid.json has {num_people}; the '
                    'files do not belong together')
  return out


class MpiiPose(tfds.core.GeneratorBasedBuilder):
  """MPII single-person pose annotations (train 22,246 / valid 2,958 people)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First version.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__

  def _info(self) -> tfds.core.DatasetInfo:
    def flat(dtype):
      return tfds.features.Tensor(shape=(None,), dtype=dtype)
    return self.dataset_info_from_configs(
        description='MPII Human Pose (16 joints), per image.',
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(None, None, 3), encoding_format='jpeg'),
            'file_name': tfds.features.Text(),
            'centers': flat(np.float32), 'scales': flat(np.float32),
            'joints': flat(np.float32), 'joints_vis': flat(np.float32),
            'index': flat(np.int64),
            'gt': flat(np.float32), 'headboxes': flat(np.float32), 'missing': flat(np.float32),
        }),
        metadata=tfds.core.MetadataDict(),
        disable_shuffling=True,
        homepage='http://human-pose.mpi-inf.mpg.de/',
    )

  def _split_generators(self, dl_manager):
    manual = dl_manager.manual_dir
    tar = os.path.join(manual, 'mpii_human_pose_v1.tar.gz')
    out = {}
    for split, name in _SPLITS.items():
      images = load_mpii_json(os.path.join(manual, name))
      names = sorted(images)
      gt = None
      if split == 'validation':
        gt = load_gt_valid(os.path.join(manual, 'gt_valid.mat'),
                           sum(len(v) for v in images.values()))
      self.info.metadata[split] = {'num_people': [len(images[n]) for n in names]}
      out[split] = self._generate_examples(dl_manager, tar, names, images, gt, name)
    return out

  def _generate_examples(self, dl_manager, tar, names, images, gt, json_name):
    if not os.path.exists(tar):
      raise DataError(f'{tar}: MPII image archive not found; put it in the manual dir')
    order = {n: i for i, n in enumerate(names)}
    seen = set()
    for member, fobj in dl_manager.iter_archive(tar):
      name = os.path.basename(member)
      if name not in order or name in seen:
        continue
      seen.add(name)
      data = fobj.read()
      decode_image(data, f'{tar}:{member}')
      people = images[name]
      idx = np.array([i for i, _ in people], np.int64)
      example = {
          'image': data, 'file_name': name,
          'centers': np.array([a['center'] for _, a in people], np.float32).reshape(-1),
          'scales': np.array([a['scale'] for _, a in people], np.float32),
          'joints': np.array([a['joints'] for _, a in people], np.float32).reshape(-1),
          'joints_vis': np.array([a['joints_vis'] for _, a in people], np.float32).reshape(-1),
          'index': idx,
          'gt': np.zeros((0,), np.float32), 'headboxes': np.zeros((0,), np.float32),
          'missing': np.zeros((0,), np.float32)}
      if gt is not None:
        example['gt'] = gt['gt'][idx].astype(np.float32).reshape(-1)
        example['headboxes'] = gt['headboxes'][idx].astype(np.float32).reshape(-1)
        example['missing'] = gt['missing'][idx].astype(np.float32).reshape(-1)
      yield order[name], example
    missing = sorted(set(names) - seen)
    if missing:
      raise DataError(f'{json_name} image {missing[0]}: not in {tar} ({len(missing)} images '
                      'missing); the image archive does not match the annotation file')

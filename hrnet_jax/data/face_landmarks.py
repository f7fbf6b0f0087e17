"""`face_landmarks`: WFLW, 300W, AFLW (csv annotations of HRNet-Facial-Landmark-Detection)
and COFW (its .mat files), one example per face.

Configs, manual files and splits (the csv files are the official repository's
data/<set>/face_landmarks_<set>_<split>.csv; images as released, in one archive):
  wflw: WFLW_images.tar.gz + face_landmarks_wflw_{train,test}.csv and
        face_landmarks_wflw_test_{largepose,expression,illumination,makeup,occlusion,blur}.csv
  300w: 300w_images.zip (the folders the csv paths name: afw, helen, ibug, lfpw, 300W)
        + face_landmarks_300w_{train,valid,valid_common,valid_challenge,test}.csv
  aflw: aflw_images.zip (the csv paths' folders) + face_landmarks_aflw_{train,test,
        test_frontal}.csv
  cofw: COFW_train_color.mat, COFW_test_color.mat (images inside; train, test)

Stored per face: the image bytes as released (COFW: PNG of the .mat array, grey repeated
to 3 channels), the csv's centre and scale (before the official x1.25), the landmarks
(L, 2) and AFLW's box_size (0 elsewhere). COFW's centre and scale follow the official
rule from the landmarks' extent.
"""
from __future__ import annotations

import csv
import math
import os
import posixpath
import tarfile
import zipfile

import cv2
import numpy as np
import tensorflow_datasets as tfds

from hrnet_jax.data.errors import DataError
from hrnet_jax.data.keypoint_datasets import NUM_LANDMARKS
from hrnet_jax.data.sources import decode_image

_CSV_SPLITS = {
    'wflw': ('train', 'test', 'test_largepose', 'test_expression', 'test_illumination',
             'test_makeup', 'test_occlusion', 'test_blur'),
    '300w': ('train', 'valid', 'valid_common', 'valid_challenge', 'test'),
    'aflw': ('train', 'test', 'test_frontal'),
}
IMAGE_ARCHIVES = {'wflw': 'WFLW_images.tar.gz', '300w': '300w_images.zip',
                  'aflw': 'aflw_images.zip'}
COFW_FILES = {'train': ('COFW_train_color.mat', 'IsTr', 'phisTr'),
              'test': ('COFW_test_color.mat', 'IsT', 'phisT')}


def csv_name(dataset: str, split: str) -> str:
  return f'face_landmarks_{dataset}_{split}.csv'


def read_landmark_csv(path: str, dataset: str) -> list[dict]:
  """Rows of an official csv (header row, columns by position): image path, scale,
  [box_size for AFLW,] centre x, centre y, then x, y per landmark."""
  if not os.path.exists(path):
    raise DataError(f'{path}: landmark annotation file not found; put it in the manual dir')
  num = NUM_LANDMARKS[dataset]
  first = 5 if dataset == 'aflw' else 4
  rows = []
  with open(path, newline='') as f:
    reader = csv.reader(f)
    next(reader, None)   # header
    for n, row in enumerate(reader, start=2):
      if not row:
        continue
      if len(row) != first + 2 * num:
        raise DataError(f'{path}: line {n} has {len(row)} columns, expected {first + 2 * num} '
                        f'({num} landmarks of {dataset})')
      try:
        values = [float(v) for v in row[1:]]
      except ValueError as e:
        raise DataError(f'{path}: line {n}: {e}') from e
      rows.append({'image': row[0], 'scale': values[0],
                   'box_size': values[1] if dataset == 'aflw' else 0.0,
                   'center': values[first - 3:first - 1],
                   'landmarks': np.asarray(values[first - 1:], np.float32).reshape(num, 2)})
  return rows


class _ImageArchive:
  """Files of a zip or an extracted tar, found by the relative path the csv names."""

  def __init__(self, path: str, dl_manager):
    self.path = path
    if not os.path.exists(path):
      raise DataError(f'{path}: image archive not found; put it in the manual dir')
    self._zip = None
    self._by_base: dict[str, list[str]] = {}
    if zipfile.is_zipfile(path):
      self._zip = zipfile.ZipFile(path)
      names = self._zip.namelist()
    elif tarfile.is_tarfile(path):
      root = dl_manager.extract(path)
      names = [os.path.relpath(os.path.join(d, f), root).replace(os.sep, '/')
               for d, _, files in os.walk(root) for f in files]
      self._root = root
    else:
      raise DataError(f'{path}: neither a zip nor a tar archive')
    for name in names:
      self._by_base.setdefault(posixpath.basename(name), []).append(name)

  def read(self, relative: str, what: str) -> bytes:
    relative = relative.replace('\\', '/').lstrip('./')
    for name in self._by_base.get(posixpath.basename(relative), []):
      if name == relative or name.endswith('/' + relative):
        if self._zip is not None:
          return self._zip.read(name)
        with open(os.path.join(self._root, name), 'rb') as f:
          return f.read()
    raise DataError(f'{what}: {relative} is not in {self.path}; the image archive does not '
                    'match the annotation file')


def load_cofw(path: str, images_key: str, points_key: str):
  """(images, (N, 87) phis) of a COFW .mat: MATLAB v5 through scipy.io, v7.3 (HDF5)
  through h5py (transposed back to MATLAB's layout)."""
  if not os.path.exists(path):
    raise DataError(f'{path}: COFW file not found; put it in the manual dir')
  import h5py  # pylint: disable=g-import-not-at-top
  if h5py.is_hdf5(path):   # MATLAB v7.3: HDF5, arrays stored transposed
    try:
      with h5py.File(path, 'r') as f:
        refs = np.asarray(f[images_key]).reshape(-1)
        images = [np.asarray(f[r]).T for r in refs]
        return images, np.asarray(f[points_key], np.float64).T
    except (OSError, KeyError, ValueError) as e:
      raise DataError(f'{path}: cannot read {images_key}/{points_key} ({e!r})') from e
  import scipy.io  # pylint: disable=g-import-not-at-top
  try:
    mat = scipy.io.loadmat(path)
    images = [np.asarray(cell) for cell in mat[images_key].reshape(-1)]
    return images, np.asarray(mat[points_key], np.float64)
  except (OSError, ValueError, KeyError, NotImplementedError) as e:
    raise DataError(f'{path}: cannot read {images_key}/{points_key} ({e!r}); re-download '
                    'the COFW .mat files') from e


def cofw_center_scale(points: np.ndarray) -> tuple[list[float], float]:
  """The official COFW box: centre from floor(min) / ceil(max), scale = max extent / 200."""
  xmin, xmax = points[:, 0].min(), points[:, 0].max()
  ymin, ymax = points[:, 1].min(), points[:, 1].max()
  center = [(math.floor(xmin) + math.ceil(xmax)) / 2.0, (math.floor(ymin) + math.ceil(ymax)) / 2.0]
  scale = max(math.ceil(xmax) - math.floor(xmin), math.ceil(ymax) - math.floor(ymin)) / 200.0
  return center, scale


class FaceLandmarks(tfds.core.GeneratorBasedBuilder):
  """Facial landmarks of the HRNet paper's four datasets."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First version.'}
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=n, description=f'{n}, {k} landmarks.')
                     for n, k in NUM_LANDMARKS.items()]
  MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__

  def _info(self) -> tfds.core.DatasetInfo:
    num = NUM_LANDMARKS[self.builder_config.name]
    return self.dataset_info_from_configs(
        description='Faces with landmarks, one example per face.',
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(None, None, 3)),
            'file_name': tfds.features.Text(),
            'center': tfds.features.Tensor(shape=(2,), dtype=np.float32),
            'scale': tfds.features.Scalar(np.float32),
            'box_size': tfds.features.Scalar(np.float32),
            'landmarks': tfds.features.Tensor(shape=(num, 2), dtype=np.float32),
        }),
        disable_shuffling=True,
        homepage='https://github.com/HRNet/HRNet-Facial-Landmark-Detection',
    )

  def _split_generators(self, dl_manager):
    name, manual = self.builder_config.name, dl_manager.manual_dir
    if name == 'cofw':
      return {split: self._generate_examples(os.path.join(manual, f), keys=(ik, pk))
              for split, (f, ik, pk) in COFW_FILES.items()}
    archive = _ImageArchive(os.path.join(manual, IMAGE_ARCHIVES[name]), dl_manager)
    # train and the main test set are required; the subsets only if their csv is there.
    splits = [s for i, s in enumerate(_CSV_SPLITS[name])
              if i < 2 or os.path.exists(os.path.join(manual, csv_name(name, s)))]
    return {split: self._generate_examples(os.path.join(manual, csv_name(name, split)),
                                           archive=archive)
            for split in splits}

  def _generate_examples(self, path: str, archive=None, keys=None):
    """From a csv and the image archive, or (keys given) from a COFW .mat file."""
    if keys is not None:
      yield from self._cofw_examples(path, *keys)
    else:
      yield from self._csv_examples(path, archive)

  def _csv_examples(self, path: str, archive: _ImageArchive):
    for i, row in enumerate(read_landmark_csv(path, self.builder_config.name)):
      what = f'{os.path.basename(path)} row {i + 1}'
      data = archive.read(row['image'], what)
      decode_image(data, f'{what} ({row["image"]})')
      yield i, {'image': data, 'file_name': row['image'],
                'center': np.asarray(row['center'], np.float32), 'scale': row['scale'],
                'box_size': row['box_size'], 'landmarks': row['landmarks']}

  def _cofw_examples(self, path: str, images_key: str, points_key: str):
    images, phis = load_cofw(path, images_key, points_key)
    if len(images) != len(phis):
      raise DataError(f'{path}: {len(images)} images but {len(phis)} landmark rows')
    for i, (image, phi) in enumerate(zip(images, phis)):
      points = np.asarray(phi[0:58], np.float64).reshape(2, -1).T
      if image.ndim == 2:   # grey images are repeated to 3 channels, as the official
        image = np.repeat(image[..., None], 3, axis=2)
      center, scale = cofw_center_scale(points)
      ok, png = cv2.imencode('.png', cv2.cvtColor(image.astype(np.uint8), cv2.COLOR_RGB2BGR))
      if not ok:
        raise DataError(f'{path}: image {i} cannot be encoded (shape {image.shape})')
      yield i, {'image': png.tobytes(), 'file_name': f'{images_key}_{i}',
                'center': np.asarray(center, np.float32), 'scale': scale, 'box_size': 0.0,
                'landmarks': points.astype(np.float32)}

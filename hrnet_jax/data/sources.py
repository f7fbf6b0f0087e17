"""Building TFDS datasets (ArrayRecord) and reading their examples.

TensorFlow is only needed to *build* a dataset, once, in a child process; reading goes
through `tfds.data_source` (ArrayRecord + numpy), which does not import TensorFlow.
Images are decoded here with OpenCV (not by TFDS) so that a corrupt file or an
image/label size mismatch becomes a `DataError` naming the example.
"""
from __future__ import annotations

import contextlib
import importlib
import os
from typing import Any

from absl import logging
import cv2
import numpy as np

from hrnet_jax.data.errors import DataError
from hrnet_jax.data.registry import DatasetInfo

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


def _tfds():
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tfds


def default_data_dir() -> str:
  return os.environ.get('TFDS_DATA_DIR') or os.path.join(
      os.path.expanduser('~'), 'tensorflow_datasets')


def default_manual_dir(data_dir: str) -> str:
  return os.path.join(data_dir, 'downloads', 'manual')


@contextlib.contextmanager
def _quiet_absl():
  """TFDS warns about the not-yet-built version folder on every look-up before a build."""
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  verbosity = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.ERROR)
  try:
    yield
  finally:
    absl_logging.set_verbosity(verbosity)


def find_builder(tfds, info: DatasetInfo, data_dir: str):
  with _quiet_absl():
    builder = tfds.builder(info.tfds_name, data_dir=data_dir, file_format='array_record')
    return builder, builder.is_prepared()


@contextlib.contextmanager
def _build_lock(data_dir: str, name: str):
  """Serialises builds of one dataset by several processes on one machine."""
  if '://' in data_dir:   # gs:// etc.: no local lock; build ahead with hrnet_jax.data.build
    yield
    return
  os.makedirs(data_dir, exist_ok=True)
  with file_lock(os.path.join(data_dir, f'.{name.replace("/", "_")}.lock')):
    yield


@contextlib.contextmanager
def file_lock(path: str):
  """An exclusive flock on `path` (created if missing) for the duration of the block."""
  import fcntl  # pylint: disable=g-import-not-at-top
  with open(path, 'w') as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def check_manual_files(info: DatasetInfo, manual_dir: str) -> None:
  missing = [f for f in info.manual_files if not os.path.exists(os.path.join(manual_dir, f))]
  if missing:
    raise DataError(
        f'dataset {info.name!r} is not built yet and needs {", ".join(info.manual_files)} in '
        f'{manual_dir} (missing: {", ".join(missing)}); download them from '
        f'{info.download_url} and put them there, or point config.data.manual_dir '
        'at their directory')


def get_builder(info: DatasetInfo, *, data_dir: str | None = None,
                manual_dir: str | None = None, build: bool = True):
  """The TFDS builder of `info`, built (ArrayRecord) into `data_dir` if it is not yet.

  The build runs in a child process (`python -m hrnet_jax.data.build`): TensorFlow never
  enters the caller, which keeps its threads and memory out of training and avoids the
  crash of importing PyTorch after TensorFlow in one process.
  """
  tfds = _tfds()
  data_dir = data_dir or default_data_dir()
  if info.user_folder is not None:   # the user's own files: checked, then built once
    return importlib.import_module(info.builder_module).get_builder(
        info, data_dir=data_dir, manual_dir=manual_dir, build=build)
  if info.builder_module:
    importlib.import_module(info.builder_module)   # registers our own builders
  builder, prepared = find_builder(tfds, info, data_dir)
  if prepared or not build:
    return builder
  manual_dir = manual_dir or default_manual_dir(data_dir)
  check_manual_files(info, manual_dir)
  with _build_lock(data_dir, info.tfds_name):
    builder, prepared = find_builder(tfds, info, data_dir)
    if not prepared:
      _build_in_child(info, data_dir, manual_dir)
      builder, _ = find_builder(tfds, info, data_dir)
  return builder


def _build_in_child(info: DatasetInfo, data_dir: str, manual_dir: str) -> None:
  logging.info('Building %s into %s (once; a child process runs TFDS).', info.tfds_name,
               data_dir)
  build_datasets([info.name], data_dir=data_dir, manual_dir=manual_dir)


def build_datasets(names, *, data_dir: str, manual_dir: str) -> None:
  """Builds several registry datasets in one child process (one TensorFlow start-up)."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  result = subprocess.run(
      [sys.executable, '-m', 'hrnet_jax.data.build', *names, '--data_dir', data_dir,
       '--manual_dir', manual_dir], capture_output=True, text=True, check=False)
  if result.returncode == 0:
    return
  for line in reversed(result.stderr.splitlines()):
    if line.startswith(BUILD_ERROR_PREFIX):
      raise DataError(line[len(BUILD_ERROR_PREFIX):])
  raise RuntimeError(f'building {", ".join(names)} into {data_dir} failed:\n'
                     f'{result.stderr[-5000:]}')


BUILD_ERROR_PREFIX = 'hrnet_jax.data.DataError: '


def open_split(info: DatasetInfo, split: str, *, data_dir: str | None = None,
               manual_dir: str | None = None):
  """A random-access source of raw examples of one split.

  Every image feature (the image, a segmentation label map, ...) stays encoded bytes:
  the task's transforms decode them in the loader's workers (`decode_image`), so a
  corrupt file becomes a `DataError` naming the example.
  """
  tfds = _tfds()
  builder = get_builder(info, data_dir=data_dir, manual_dir=manual_dir)
  decoders = {key: tfds.decode.SkipDecoding() for key, feature in builder.info.features.items()
              if isinstance(feature, tfds.features.Image)}
  decoders[info.image_key] = tfds.decode.SkipDecoding()
  try:
    source = builder.as_data_source(split=info.tfds_split(split), decoders=decoders)
  except ValueError as e:
    # TFDS's words for a split slice that selects nothing ('validation[:0]').
    if 'can not be of 0 length' not in str(e):
      raise
    source = ()
  except NotImplementedError as e:
    raise DataError(f'{builder.data_dir} holds {info.tfds_name} in another file format; '
                    f'delete it (or use another config.data.data_dir) to rebuild it as '
                    f'ArrayRecord ({e})') from e
  if not len(source):  # pylint: disable=g-explicit-length-test  (sources have no __bool__)
    raise DataError(f'split {split!r} of {info.name} holds no examples: choose a split '
                    f'(config.data.train_split / config.data.eval_split) that selects some')
  return source


def image_shape(source: Any, info: DatasetInfo) -> tuple[int | None, int | None]:
  """The (h, w) of every image of the dataset, or Nones when sizes vary."""
  shape = source.dataset_info.features[info.image_key].shape
  return shape[0], shape[1]


def example_id(example: dict[str, Any], info: DatasetInfo, split: str, index: int) -> str:
  value = example.get(info.id_key) if info.id_key else None
  if isinstance(value, bytes):
    value = value.decode('utf-8', 'replace')
  return f'{info.name} {split} example {index}' + (f' ({value})' if value else '')


def decode_image(data: bytes, what: str, *, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
  array = cv2.imdecode(np.frombuffer(data, np.uint8), flags) if len(data) else None
  if array is None:
    raise DataError(f'{what}: cannot decode the encoded image ({len(data)} bytes, corrupt '
                    'file?); replace the file and rebuild the dataset')
  return array


def decode_segmentation(example: dict[str, Any], info: DatasetInfo, what: str
                        ) -> tuple[np.ndarray, np.ndarray]:
  """(image BGR uint8 (h, w, 3), label uint8 (h, w) training ids) of a raw example."""
  image = decode_image(example[info.image_key], f'{what} image')
  label = decode_image(example[info.label_key], f'{what} label', flags=cv2.IMREAD_UNCHANGED)
  if label.ndim == 3 and label.shape[2] == 1:
    label = label[..., 0]
  if label.ndim != 2 or label.dtype != np.uint8:
    raise DataError(f'{what}: label must be a single-channel 8-bit map, got shape '
                    f'{label.shape} {label.dtype}')
  if label.shape != image.shape[:2]:
    raise DataError(f'{what}: image is {image.shape[0]}x{image.shape[1]} but label is '
                    f'{label.shape[0]}x{label.shape[1]}; fix or remove this example')
  if info.label_to_train_id is not None:
    label = cv2.LUT(label, info.label_to_train_id)
  return image, label


def decode_classification(example: dict[str, Any], info: DatasetInfo, what: str
                          ) -> tuple[np.ndarray, int]:
  """(image RGB uint8, label) decoded with PIL as torchvision's ImageFolder does."""
  import io  # pylint: disable=g-import-not-at-top
  from PIL import Image, UnidentifiedImageError  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(io.BytesIO(example[info.image_key])) as pil:
      image = np.asarray(pil.convert('RGB'))
  except (UnidentifiedImageError, OSError) as e:
    raise DataError(f'{what} image: cannot decode the encoded image ({e}); replace the '
                    'file and rebuild the dataset') from e
  return image, int(example[info.label_key])

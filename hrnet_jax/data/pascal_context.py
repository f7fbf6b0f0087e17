"""`pascal_context`: PASCAL-Context (VOC2010 images, 459-class full-scene labels).

Stored labels use the 60-class convention: the 59 frequent classes are 1..59 in the order
of registry.PASCAL_CONTEXT_59_CLASSES, 0 is background and every other of the 459 classes.
The registry entries `pascal_context_60` (0..59) and `pascal_context_59` (labels minus
one, background ignored, as the official code) read the same build.

Manual files:
  VOCtrainval_03-May-2010.tar (http://host.robots.ox.ac.uk/pascal/VOC/voc2010/) ->
    VOCdevkit/VOC2010/JPEGImages/<id>.jpg, VOCdevkit/VOC2010/ImageSets/Main/{train,val}.txt
  trainval.tar.gz (https://cs.stanford.edu/~roozbeh/pascal-context/) ->
    trainval/<id>.mat holding `LabelMap` (459-class ids)
Splits: VOC2010 train (4,998 images) and val (5,105).
"""
from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from hrnet_jax.data import archives
from hrnet_jax.data.errors import DataError
from hrnet_jax.data.registry import PASCAL_CONTEXT_459_IDS

_SPLITS = {'train': 'train', 'validation': 'val'}


def label_map_to_60(label_map: np.ndarray) -> np.ndarray:
  """459-class ids -> 0 (background and rare classes) or 1..59."""
  lut = np.zeros(max(int(label_map.max(initial=0)), max(PASCAL_CONTEXT_459_IDS)) + 1,
                 np.uint8)
  lut[list(PASCAL_CONTEXT_459_IDS)] = np.arange(1, 60, dtype=np.uint8)
  return lut[label_map.astype(np.int64)]


class PascalContext(tfds.core.GeneratorBasedBuilder):
  """PASCAL-Context with 60-class labels (0 = background)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First version.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = ('Put VOCtrainval_03-May-2010.tar and trainval.tar.gz '
                                  'in the manual dir.')

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description='PASCAL-Context, 59 classes + background.',
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(None, None, 3), encoding_format='jpeg'),
            'label': tfds.features.Image(shape=(None, None, 1), encoding_format='png'),
            'image_id': tfds.features.Text(),
        }),
        supervised_keys=('image', 'label'),
        homepage='https://cs.stanford.edu/~roozbeh/pascal-context/',
    )

  def _split_generators(self, dl_manager):
    voc = dl_manager.extract(os.path.join(dl_manager.manual_dir,
                                          'VOCtrainval_03-May-2010.tar'))
    ctx = dl_manager.extract(os.path.join(dl_manager.manual_dir, 'trainval.tar.gz'))
    image_dir = archives.find_dir([voc], 'VOC2010/JPEGImages', 'PASCAL-Context')
    lists = archives.find_dir([voc], 'VOC2010/ImageSets/Main', 'PASCAL-Context')
    mat_dir = archives.find_dir([ctx], 'trainval', 'PASCAL-Context')
    return {split: self._generate_examples(os.path.join(lists, f'{name}.txt'), image_dir,
                                           mat_dir)
            for split, name in _SPLITS.items()}

  def _generate_examples(self, id_list: str, image_dir: str, mat_dir: str):
    import scipy.io  # pylint: disable=g-import-not-at-top
    with open(id_list) as f:
      ids = [line.split()[0] for line in f if line.strip()]
    for image_id in ids:
      mat_path = os.path.join(mat_dir, image_id + '.mat')
      try:
        label_map = scipy.io.loadmat(mat_path)['LabelMap']
      except (OSError, ValueError, KeyError) as e:
        raise DataError(f'{mat_path}: cannot read LabelMap ({e!r}); re-download '
                        'trainval.tar.gz') from e
      label = label_map_to_60(label_map)
      image = archives.checked_image(os.path.join(image_dir, image_id + '.jpg'), label.shape)
      yield image_id, {'image': image, 'label': archives.encode_png(label),
                       'image_id': image_id}

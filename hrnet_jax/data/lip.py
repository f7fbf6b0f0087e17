"""`lip`: Look Into Person (single-person human parsing, 20 classes) from the release zips.

Manual files (https://sysu-hcp.net/lip, "Single Person"):
  TrainVal_images.zip                -> {train,val}_images/<id>.jpg  (+ {train,val}_id.txt)
  TrainVal_parsing_annotations.zip   -> {train,val}_segmentations/<id>.png  (values 0..19)
Images are stored as released (JPEG bytes); labels re-encoded as grey PNGs.
"""
from __future__ import annotations

import os

import tensorflow_datasets as tfds

from hrnet_jax.data import archives

_SPLITS = {'train': ('train_images', 'train_segmentations'),
           'validation': ('val_images', 'val_segmentations')}


class Lip(tfds.core.GeneratorBasedBuilder):
  """LIP single-person parsing: 30,462 train / 10,000 validation images."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First version.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = ('Put TrainVal_images.zip and '
                                  'TrainVal_parsing_annotations.zip in the manual dir.')

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description='Look Into Person, 20 parsing classes (0 = background).',
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(None, None, 3), encoding_format='jpeg'),
            'label': tfds.features.Image(shape=(None, None, 1), encoding_format='png'),
            'image_id': tfds.features.Text(),
        }),
        supervised_keys=('image', 'label'),
        homepage='https://sysu-hcp.net/lip/',
    )

  def _split_generators(self, dl_manager):
    roots = [dl_manager.extract(os.path.join(dl_manager.manual_dir, name))
             for name in ('TrainVal_images.zip', 'TrainVal_parsing_annotations.zip')]
    return {split: self._generate_examples(archives.find_dir(roots, images, 'LIP'),
                                           archives.find_dir(roots, labels, 'LIP'))
            for split, (images, labels) in _SPLITS.items()}

  def _generate_examples(self, image_dir: str, label_dir: str):
    yield from archives.paired_examples(image_dir, label_dir)

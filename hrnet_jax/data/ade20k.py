"""`ade20k`: ADE20K SceneParsing (150 classes) from ADEChallengeData2016.zip.

The official HRNet code reads this release. (The TFDS catalog `scene_parse150` downloads
the 2017 *instance* annotations instead, whose values are not the 150 semantic classes,
and needs internet access; hence our own builder.)

Manual file (http://sceneparsing.csail.mit.edu/): ADEChallengeData2016.zip ->
  ADEChallengeData2016/images/{training,validation}/ADE_*.jpg
  ADEChallengeData2016/annotations/{training,validation}/ADE_*.png  (0 = other, 1..150)
"""
from __future__ import annotations

import os

import tensorflow_datasets as tfds

from hrnet_jax.data import archives

_SPLITS = {'train': 'training', 'validation': 'validation'}


class Ade20k(tfds.core.GeneratorBasedBuilder):
  """ADE20K SceneParsing: 20,210 train / 2,000 validation images."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First version.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = 'Put ADEChallengeData2016.zip in the manual dir.'

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description='ADE20K SceneParsing, labels 0 (other) and 1..150.',
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(None, None, 3), encoding_format='jpeg'),
            'label': tfds.features.Image(shape=(None, None, 1), encoding_format='png'),
            'image_id': tfds.features.Text(),
        }),
        supervised_keys=('image', 'label'),
        homepage='http://sceneparsing.csail.mit.edu/',
    )

  def _split_generators(self, dl_manager):
    root = dl_manager.extract(os.path.join(dl_manager.manual_dir, 'ADEChallengeData2016.zip'))
    return {split: self._generate_examples(
        archives.find_dir([root], f'images/{folder}', 'ADE20K'),
        archives.find_dir([root], f'annotations/{folder}', 'ADE20K'))
            for split, folder in _SPLITS.items()}

  def _generate_examples(self, image_dir: str, label_dir: str):
    yield from archives.paired_examples(image_dir, label_dir)

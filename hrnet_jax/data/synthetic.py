"""`hrnet_synthetic`: procedural street scenes as a TFDS dataset (no download needed).

Configs:
  default: 256x512 images, 300 train / 100 validation (the quickstart).
  tiny:    64x128 images, 24 train / 12 validation (tests).

Examples are deterministic: example i of a split is rendered from
`np.random.default_rng([seed, split_id, i])`, so every build is bit-identical.
"""
from __future__ import annotations

import cv2
import numpy as np
import tensorflow_datasets as tfds

from hrnet_jax.data import scenes

_SEED = 20_240_601
_SPLIT_IDS = {'train': 0, 'validation': 1}


class HrnetSyntheticConfig(tfds.core.BuilderConfig):
  """Image size and split sizes of one variant."""

  def __init__(self, *, height: int, width: int, num_train: int, num_validation: int,
               **kwargs):
    super().__init__(**kwargs)
    self.height, self.width = height, width
    self.split_sizes = {'train': num_train, 'validation': num_validation}


class HrnetSynthetic(tfds.core.GeneratorBasedBuilder):
  """Street-like scenes with the 19 Cityscapes trainIds (255 = void)."""

  VERSION = tfds.core.Version('1.3.0')
  RELEASE_NOTES = {'1.0.0': 'First version.',
                   '1.1.0': 'A colour family per class, larger thin objects.',
                   '1.2.0': 'Larger two-wheelers, people and lights; nearer depth range.',
                   '1.3.0': 'More and larger walls and fences, wider poles.'}
  BUILDER_CONFIGS = [
      HrnetSyntheticConfig(name='default', description='256x512, 300/100 images.',
                           height=256, width=512, num_train=300, num_validation=100),
      HrnetSyntheticConfig(name='tiny', description='64x128, 24/12 images, for tests.',
                           height=64, width=128, num_train=24, num_validation=12),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    h, w = self.builder_config.height, self.builder_config.width
    return self.dataset_info_from_configs(
        description='Procedural street scenes labelled with Cityscapes trainIds.',
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(h, w, 3), encoding_format='png'),
            'label': tfds.features.Image(shape=(h, w, 1), encoding_format='png'),
            'image_id': tfds.features.Text(),
        }),
        supervised_keys=('image', 'label'),
        homepage='https://github.com/hrnet-jax',
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {split: self._generate_examples(split)
            for split in self.builder_config.split_sizes}

  def _generate_examples(self, split: str):
    cfg = self.builder_config
    for i in range(cfg.split_sizes[split]):
      rng = np.random.default_rng([_SEED, _SPLIT_IDS[split], i])
      image, label = scenes.render_scene(rng, cfg.height, cfg.width)
      key = f'{split}_{i:05d}'
      # Encoded here with OpenCV (TFDS would run a TF graph per image) and passed as bytes.
      yield key, {
          'image': _png(cv2.cvtColor(image, cv2.COLOR_RGB2BGR)),
          'label': _png(label),
          'image_id': key,
      }


def _png(array: np.ndarray) -> bytes:
  ok, buf = cv2.imencode('.png', array, [cv2.IMWRITE_PNG_COMPRESSION, 1])
  assert ok
  return buf.tobytes()

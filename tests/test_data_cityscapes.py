"""Cityscapes end to end: fake full-size zips -> TFDS catalog builder -> our pipeline.

Also the error paths: missing zips, a corrupt PNG, an image/label size mismatch.
"""
import cv2
import numpy as np
import pytest

from configs import default
from hrnet_jax import data
from hrnet_jax.data import fakes
from hrnet_jax.data import registry
from hrnet_jax.data import sources

CORRUPT = 'berlin_000000_000019'        # test split
MISMATCHED = 'berlin_000001_000020'


@pytest.fixture(scope='module')
def cityscapes(tmp_path_factory):
  root = tmp_path_factory.mktemp('cityscapes')
  manual = str(root / 'manual')
  examples = fakes.write_fake_cityscapes(
      manual, images_per_split={'train': 3, 'val': 2, 'test': 2},
      corrupt=(CORRUPT,), mismatched=(MISMATCHED,))
  config = default.get_config()
  config.data.data_dir = str(root / 'tfds')
  config.data.manual_dir = manual
  config.data.num_workers = 0
  config.global_batch_size = 3
  config.eval.global_batch_size = 2
  config.data.crop_size = (512, 1024)
  return config, examples


def _train_ids(label_ids):
  return registry.CITYSCAPES_LABEL_TO_TRAIN_ID.get(int(label_ids), 255)


def test_zip_layout_is_what_the_catalog_builder_reads(cityscapes):
  import zipfile
  config, examples = cityscapes
  with zipfile.ZipFile(f'{config.data.manual_dir}/leftImg8bit_trainvaltest.zip') as z:
    names = set(z.namelist())
  assert 'leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png' in names
  with zipfile.ZipFile(f'{config.data.manual_dir}/gtFine_trainvaltest.zip') as z:
    names = set(z.namelist())
  assert 'gtFine/val/frankfurt/frankfurt_000000_000019_gtFine_labelIds.png' in names
  assert len(examples) == 7


@pytest.mark.slow
def test_validation_labels_are_train_ids_of_the_label_ids(cityscapes):
  config, examples = cityscapes
  loader = data.make_eval_loader(config)
  assert len(loader) == 1 and loader.pad_size == (1024, 2048)
  lut = data.get_dataset_info('cityscapes').label_to_train_id
  seen = set()
  for batch in loader:
    for i in np.flatnonzero(batch['mask']):
      source = sources.open_split(data.get_dataset_info('cityscapes'), 'validation',
                                  data_dir=config.data.data_dir)
      image_id = source[int(batch['index'][i])]['image_id'].decode()
      ex = examples[image_id]
      assert ex['split'] == 'val'
      np.testing.assert_array_equal(batch['label'][i], lut[ex['label_ids']])
      np.testing.assert_array_equal(batch['image'][i], ex['image'])
      seen.add(image_id)
  assert len(seen) == 2
  # The mapping itself, independently: 7 road -> 0, 26 car -> 13, 33 bicycle -> 18, rest 255.
  assert (lut[7], lut[26], lut[33], lut[0], lut[6], lut[34]) == (0, 13, 18, 255, 255, 255)
  assert sorted(lut[lut != 255].tolist()) == list(range(19))


def test_training_batches_keep_train_ids_aligned_with_the_image(cityscapes):
  """Each fake labelId has its own colour: wherever the (bilinearly resized) image is flat,
  the colour names the labelId, whose trainId the nearest-resized label must carry."""
  config, _ = cityscapes
  colours = fakes.label_colours(34).astype(np.int64)
  keys = colours[:, 0] * 65536 + colours[:, 1] * 256 + colours[:, 2]
  order = np.argsort(keys)
  train_id_of_key = np.array([_train_ids(i) for i in range(34)])[order]
  loader = data.make_train_loader(config)
  checked = 0
  for _ in range(3):
    batch = next(loader)
    assert batch['image'].shape == (3, 512, 1024, 3)
    for image, label in zip(batch['image'], batch['label']):
      flat = np.all([cv2.erode(image[..., c], np.ones((5, 5))) ==
                     cv2.dilate(image[..., c], np.ones((5, 5))) for c in range(3)], axis=0)
      flat &= image.any(-1)     # not the zero padding
      pixel_keys = image[flat].astype(np.int64) @ np.array([65536, 256, 1])
      slot = np.searchsorted(keys[order], pixel_keys)
      assert (keys[order][slot] == pixel_keys).all()     # flat pixels are label colours
      np.testing.assert_array_equal(label[flat], train_id_of_key[slot])
      assert set(np.unique(label)) <= set(range(19)) | {255}
      checked += flat.sum()
  assert checked > 3 * 3 * 512 * 1024 * 0.3


def test_corrupt_png_and_size_mismatch_name_the_example(cityscapes):
  config, _ = cityscapes
  info = data.get_dataset_info('cityscapes')
  source = sources.open_split(info, 'test', data_dir=config.data.data_dir)
  messages = []
  for i in range(len(source)):
    with pytest.raises(data.DataError) as e:
      sources.decode_segmentation(source[i], info, sources.example_id(source[i], info,
                                                                      'test', i))
    messages.append(str(e.value))
  corrupt = [m for m in messages if CORRUPT in m]
  mismatched = [m for m in messages if MISMATCHED in m]
  assert len(corrupt) == 1 and 'cannot decode' in corrupt[0]
  assert len(mismatched) == 1 and '1024x2048 but label is 512x2048' in mismatched[0]
  assert all('\n' not in m for m in messages)
  # And through the loader: the evaluation stops with the same kind of error.
  config.data.eval_split = 'test'
  with pytest.raises(data.DataError, match='berlin_00000'):
    list(data.make_eval_loader(config))
  config.data.eval_split = 'validation'


def test_missing_zips_name_files_url_and_directory(tmp_path):
  config = default.get_config()
  config.data.data_dir = str(tmp_path / 'tfds')
  config.data.manual_dir = str(tmp_path / 'nothing_here')
  (tmp_path / 'nothing_here').mkdir()
  (tmp_path / 'nothing_here' / 'gtFine_trainvaltest.zip').write_bytes(b'')
  with pytest.raises(data.DataError) as e:
    data.make_train_loader(config)
  message = str(e.value)
  assert 'missing: leftImg8bit_trainvaltest.zip' in message
  assert 'gtFine_trainvaltest.zip' in message.split('missing:')[0]
  assert str(tmp_path / 'nothing_here') in message
  assert 'cityscapes-dataset.com' in message and '\n' not in message

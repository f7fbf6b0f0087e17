"""Our TFDS builders (LIP, PASCAL-Context, ADE20K) and the ImageNet catalog builder on fake
release archives, read through the real pipeline; the synthetic set's properties."""
import numpy as np
import pytest

from configs import default
from hrnet_jax import data
from hrnet_jax.data import fakes
from hrnet_jax.data import registry
from hrnet_jax.data import sources


@pytest.fixture(scope='module')
def built(tmp_path_factory):
  """Fake LIP, PASCAL-Context, ADE20K and ImageNet archives, built in one child process."""
  root = tmp_path_factory.mktemp('builders')
  manual = str(root / 'manual')
  examples = {'lip': fakes.write_fake_lip(manual),
              'pascal_context': fakes.write_fake_pascal_context(manual),
              'ade20k': fakes.write_fake_ade20k(manual),
              'imagenet2012': fakes.write_fake_imagenet(manual)}
  sources.build_datasets(['lip', 'pascal_context_60', 'ade20k', 'imagenet2012'],
                         data_dir=str(root / 'tfds'), manual_dir=manual)
  return root, examples


def _config(root, name, **data_fields):
  config = default.get_config()
  config.data.name = name
  config.data.data_dir = str(root / 'tfds')
  config.data.manual_dir = str(root / 'manual')
  config.data.num_workers = 0
  config.global_batch_size = 2
  config.eval.global_batch_size = 2
  for k, v in data_fields.items():
    config.data[k] = v
  return config


def _eval_examples(config):
  """{image_id: (image, label)} of the evaluation split through the eval loader."""
  info = data.get_dataset_info(config.data.name)
  source = sources.open_split(info, config.data.eval_split, data_dir=config.data.data_dir,
                              manual_dir=config.data.manual_dir)
  out = {}
  for batch in data.make_eval_loader(config):
    for i in np.flatnonzero(batch['mask']):
      h, w = batch['height'][i], batch['width'][i]
      image_id = source[int(batch['index'][i])]['image_id'].decode()
      out[image_id] = (batch['image'][i, :h, :w], batch['label'][i, :h, :w])
      assert (batch['label'][i, h:] == 255).all() and (batch['label'][i, :, w:] == 255).all()
  return out


@pytest.mark.slow
def test_lip_builder_and_pipeline(built):
  root, examples = built
  examples = examples['lip']
  config = _config(root, 'lip', eval_pad_size=(128, 128), crop_size=(48, 48),
                   base_size=48, scale_factor=11)
  got = _eval_examples(config)
  assert set(got) == {k for k, v in examples.items() if v['split'] == 'val'}
  for image_id, (image, label) in got.items():
    np.testing.assert_array_equal(label, examples[image_id]['label'])   # 0..19 as stored
    # JPEG (quality 100, 4:4:4) of flat blocks: within a few levels of the colours.
    assert np.abs(image.astype(int) - examples[image_id]['image']).mean() < 3
  batch = next(data.make_train_loader(config))
  assert batch['image'].shape == (2, 48, 48, 3)
  assert set(np.unique(batch['label'])) <= set(range(20)) | {255}


@pytest.mark.slow
def test_corrupt_image_fails_the_build_naming_the_file(tmp_path):
  """Through the whole path: loader -> child build process -> DataError back here."""
  examples = fakes.write_fake_lip(str(tmp_path / 'manual'))
  bad = sorted(k for k, v in examples.items() if v['split'] == 'train')[0]
  fakes.write_fake_lip(str(tmp_path / 'manual'), corrupt=(bad,))
  config = _config(tmp_path, 'lip', eval_pad_size=(128, 128))
  with pytest.raises(data.DataError, match=f'{bad}.jpg: cannot decode'):
    data.make_train_loader(config)


def test_size_mismatch_and_missing_label_name_the_file(tmp_path):
  """The check every builder of ours runs on each example, without a TFDS build."""
  import cv2
  from hrnet_jax.data import archives
  images, labels = tmp_path / 'images', tmp_path / 'labels'
  images.mkdir()
  labels.mkdir()
  cv2.imwrite(str(images / 'a.jpg'), np.zeros((20, 30, 3), np.uint8))
  cv2.imwrite(str(labels / 'a.png'), np.zeros((20, 31), np.uint8))
  with pytest.raises(data.DataError, match='a.jpg: image is 20x30 but its label is 20x31'):
    list(archives.paired_examples(str(images), str(labels)))
  cv2.imwrite(str(images / '0.jpg'), np.zeros((20, 30, 3), np.uint8))
  with pytest.raises(data.DataError, match='0.png: label file missing'):
    list(archives.paired_examples(str(images), str(labels)))


def test_pascal_context_59_and_60(built):
  root, examples = built
  examples = examples['pascal_context']
  ids = registry.PASCAL_CONTEXT_459_IDS
  for name, num_classes in (('pascal_context_60', 60), ('pascal_context_59', 59)):
    config = _config(root, name, eval_pad_size=(96, 96))
    got = _eval_examples(config)
    assert set(got) == {k for k, v in examples.items() if v['split'] == 'val'}
    for image_id, (_, label) in got.items():
      label_map = examples[image_id]['label_map']
      # Independent mapping: position in the 59-id list, + 1; others background (0).
      ref60 = np.zeros(label_map.shape, np.int64)
      for k, class_id in enumerate(ids):
        ref60[label_map == class_id] = k + 1
      ref = ref60 if num_classes == 60 else np.where(ref60 == 0, 255, ref60 - 1)
      np.testing.assert_array_equal(label, ref)
    assert data.get_dataset_info(name).num_classes == num_classes
  info59 = data.get_dataset_info('pascal_context_59')
  assert info59.class_names[ids.index(2)] == 'aeroplane'
  assert info59.class_names[ids.index(284)] == 'person'
  assert info59.class_names[ids.index(458)] == 'wood'


def test_ade20k_labels_shift_by_one_with_other_ignored(built):
  root, examples = built
  examples = examples['ade20k']
  config = _config(root, 'ade20k', eval_pad_size=(128, 128))
  got = _eval_examples(config)
  assert set(got) == {k for k, v in examples.items() if v['split'] == 'validation'}
  for image_id, (_, label) in got.items():
    stored = examples[image_id]['label'].astype(np.int64)
    np.testing.assert_array_equal(label, np.where(stored == 0, 255, stored - 1))
  assert len(registry.ADE20K_CLASSES) == 150


def test_imagenet_catalog_builder_and_classification_pipeline(built):
  torchvision = pytest.importorskip('torchvision')
  from PIL import Image
  import io
  root, examples = built
  examples = examples['imagenet2012']
  config = _config(root, 'imagenet2012', crop_size=(32, 32), eval_resize=36)
  info = data.get_dataset_info('imagenet2012')
  assert len(info.class_names) == 1000 and info.class_names[0] == 'n01440764'
  train = next(data.make_train_loader(config))
  assert train['image'].shape == (2, 32, 32, 3) and train['label'].shape == (2,)
  assert set(train['label'].tolist()) <= {0, 1, 2}
  source = sources.open_split(info, 'validation', data_dir=config.data.data_dir,
                              manual_dir=config.data.manual_dir)
  ref_tf = torchvision.transforms.Compose([torchvision.transforms.Resize(36),
                                           torchvision.transforms.CenterCrop(32)])
  count = 0
  for batch in data.make_eval_loader(config):
    for i in np.flatnonzero(batch['mask']):
      name = source[int(batch['index'][i])]['file_name'].decode()
      pil = Image.open(io.BytesIO(examples[name]['jpeg'])).convert('RGB')
      np.testing.assert_array_equal(batch['image'][i], np.asarray(ref_tf(pil)))
      count += 1
  assert count == 3


def test_registry():
  assert set(data.dataset_names()) >= {'cityscapes', 'hrnet_synthetic', 'lip', 'ade20k',
                                       'pascal_context_59', 'pascal_context_60',
                                       'imagenet2012'}
  for name in data.dataset_names():
    if name in registry.USER_FOLDER_MODULES:   # read from config.data.root: test_data_folder
      continue
    info = data.get_dataset_info(name)
    assert len(info.class_names) == info.num_classes, name
    if info.palette is not None:
      assert info.palette.shape == (info.num_classes, 3) and info.palette.dtype == np.uint8
      assert len({tuple(c) for c in info.palette}) == info.num_classes, name
  with pytest.raises(data.DataError, match='unknown dataset'):
    data.get_dataset_info('nope')


def test_synthetic_scenes_are_deterministic_and_cover_every_class():
  from hrnet_jax.data import scenes
  a = scenes.render_scene(np.random.default_rng([1, 2]), 128, 256)
  b = scenes.render_scene(np.random.default_rng([1, 2]), 128, 256)
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])
  counts = np.zeros(256, np.int64)
  for i in range(30):
    image, label = scenes.render_scene(np.random.default_rng([0, i]), 128, 256)
    assert image.shape == (128, 256, 3) and image.dtype == np.uint8
    counts += np.bincount(label.ravel(), minlength=256)
  assert (counts[:19] > 0).all()
  assert counts[19:255].sum() == 0 and 0 < counts[255] < 0.1 * counts.sum()

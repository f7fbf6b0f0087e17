"""The user's own data: a folder of images and masks (data.name=folder) and class-named
folders (data.name=image_folder) built into TFDS, their checks, and the browse tool."""
import json
import os
import shutil
import subprocess
import sys

import cv2
import ml_collections
import numpy as np
from PIL import Image
import pytest

from hrnet_jax.data import folder_checks
from hrnet_jax.data import folder_classes
from hrnet_jax.data import folder_fakes
from hrnet_jax.data import folder_layout
from hrnet_jax.data import registry
from hrnet_jax.data import sources
from hrnet_jax.data.errors import DataError

H, W = 64, 128


def _info(root, name='folder', **kw):
  return registry.dataset_info(ml_collections.ConfigDict(dict(name=name, root=str(root), **kw)))


def _examples(root, data_dir, split):
  info = _info(root)
  src = sources.open_split(info, split, data_dir=str(data_dir))
  out = []
  for i in range(len(src)):
    ex = src[i]
    image, label = sources.decode_segmentation(ex, info, f'{split} {i}')
    out.append((ex['image_id'].decode(), bytes(ex['image']), image, label))
  return out


def _files_in(path):
  return sorted(os.path.relpath(os.path.join(d, f), path)
                for d, _, fs in os.walk(path) for f in fs) if os.path.exists(path) else []


@pytest.fixture(scope='module')
def streets(tmp_path_factory):
  """The 60-scene folder (JPEG images, PNG masks, 19 classes) built once."""
  base = tmp_path_factory.mktemp('folder')
  root, data_dir = base / 'streets', base / 'tfds'
  stems = folder_fakes.write_scene_folder(str(root), num_images=60, height=H, width=W)
  return root, data_dir, stems, {s: _examples(root, data_dir, s)
                                 for s in ('train', 'validation')}


@pytest.mark.slow
def test_folder_builds_into_tfds_and_reads_back_the_files(streets):
  root, data_dir, stems, examples = streets
  info = _info(root)
  assert info.num_classes == 19 and info.class_names == registry.CITYSCAPES_CLASSES
  np.testing.assert_array_equal(info.palette, np.asarray(registry.CITYSCAPES_PALETTE))
  for split, folder in (('train', 'train'), ('validation', 'val')):
    assert [e[0] for e in examples[split]] == sorted(stems[folder])
    for key, raw, image, label in examples[split]:
      with open(root / 'images' / folder / f'{key}.jpg', 'rb') as f:
        assert raw == f.read()          # the original JPEG bytes, not re-encoded
      np.testing.assert_array_equal(image, cv2.imread(str(root / 'images' / folder /
                                                          f'{key}.jpg')))
      np.testing.assert_array_equal(label, cv2.imread(str(root / 'masks' / folder /
                                                          f'{key}.png'), cv2.IMREAD_UNCHANGED))
  builds = os.listdir(data_dir / 'hrnet_folder')
  assert len(builds) == 1 and builds[0].startswith('streets_')
  src = sources.open_split(info, 'validation', data_dir=str(data_dir))
  assert sources.image_shape(src, info) == (H, W)    # one size: no eval_pad_size needed


@pytest.mark.slow
def test_list_file_layout_gives_the_identical_dataset(streets, tmp_path):
  _, _, _, examples = streets
  root = tmp_path / 'streets'
  folder_fakes.write_scene_folder(str(root), num_images=60, height=H, width=W,
                                  layout='lists')
  assert os.path.exists(root / 'train.lst') and not os.path.exists(root / 'images' / 'train')
  for split in ('train', 'validation'):
    listed = _examples(root, tmp_path / 'tfds', split)
    assert len(listed) == len(examples[split])
    for (k1, raw1, im1, lab1), (k2, raw2, im2, lab2) in zip(examples[split], listed):
      assert k1 == k2 and raw1 == raw2
      np.testing.assert_array_equal(im1, im2)
      np.testing.assert_array_equal(lab1, lab2)


@pytest.mark.slow
def test_a_changed_folder_is_built_again_an_unchanged_one_is_not(tmp_path):
  root, data_dir = tmp_path / 'small', tmp_path / 'tfds'
  folder_fakes.write_scene_folder(str(root), num_images=6, height=32, width=64)
  _examples(root, data_dir, 'train')
  first = os.listdir(data_dir / 'hrnet_folder')
  _examples(root, data_dir, 'train')
  assert os.listdir(data_dir / 'hrnet_folder') == first
  mask = root / 'masks' / 'train' / 'street_0005.png'
  label = cv2.imread(str(mask), cv2.IMREAD_UNCHANGED)
  label[:4] = 3
  cv2.imwrite(str(mask), label)
  (key, _, _, new_label), = [e for e in _examples(root, data_dir, 'train')
                             if e[0] == 'street_0005']
  assert (new_label[:4] == 3).all()
  assert len(os.listdir(data_dir / 'hrnet_folder')) == 2


# --- checks: each bad input gives its one line and writes nothing ---------------------

def _truncate(path):
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])


def _break_value(root):
  for stem, value in (('street_0007', 19), ('street_0008', 37)):
    path = root / 'masks' / 'train' / f'{stem}.png'
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    label[0, :3] = value
    cv2.imwrite(str(path), label)


def _break_size(root):
  path = root / 'images' / 'train' / 'street_0003.jpg'
  cv2.imwrite(str(path), cv2.resize(cv2.imread(str(path)), (30, 20)))


def _break_transparent(root):
  path = root / 'images' / 'train' / 'street_0004.jpg'
  bgra = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2BGRA)
  bgra[0, 0, 3] = 0
  os.remove(path)
  cv2.imwrite(str(path.with_suffix('.png')), bgra)


def _break_float(root):
  path = root / 'images' / 'train' / 'street_0004.jpg'
  os.remove(path)
  cv2.imwrite(str(path.with_suffix('.tiff')), np.zeros((32, 64), np.float32))


def _break_colour_mask(root):
  (root / 'classes.txt').write_text(folder_fakes.class_file_text(colours=False))
  path = root / 'masks' / 'train' / 'street_0002.png'
  label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
  cv2.imwrite(str(path), np.stack([label, label // 2, label], -1))


def _empty_val(root):
  for sub in ('images', 'masks'):
    shutil.rmtree(root / sub / 'val')
    os.makedirs(root / sub / 'val')


BAD_INPUTS = {
    'mask values not in the class file': (
        _break_value, ['values not in', '19 (1 files: masks/train/street_0007.png)',
                       '37 (1 files: masks/train/street_0008.png)']),
    'image/mask size mismatch': (
        _break_size, ['street_0003.jpg is 20x30 but its mask', 'street_0003.png is 32x64']),
    'image without mask': (
        lambda r: os.remove(r / 'masks' / 'train' / 'street_0002.png'),
        ['1 images have no mask', 'images/train/street_0002.jpg']),
    'mask without image': (
        lambda r: os.remove(r / 'images' / 'train' / 'street_0002.jpg'),
        ['1 masks have no image', 'masks/train/street_0002.png']),
    'truncated image': (
        lambda r: _truncate(r / 'images' / 'train' / 'street_0005.jpg'),
        ['street_0005.jpg: cannot read this image', 'truncated']),
    'not an image': (
        lambda r: (r / 'masks' / 'train' / 'street_0005.png').write_bytes(b'hello'),
        ['street_0005.png: cannot read this mask']),
    'transparent RGBA image': (
        _break_transparent, ['street_0004.png: the image has 1 transparent pixels']),
    'float image': (_break_float, ['street_0004.tiff: images of mode', 'not supported']),
    'colour mask without colours': (
        _break_colour_mask, ['street_0002.png: colour mask', 'gives no colours']),
    'empty split': (_empty_val, ["split 'validation'", 'is empty']),
}


@pytest.mark.parametrize('case', sorted(BAD_INPUTS))
def test_each_bad_input_gives_its_line_and_writes_nothing(case, tmp_path):
  breaker, expected = BAD_INPUTS[case]
  root, data_dir = tmp_path / 'bad', tmp_path / 'tfds'
  folder_fakes.write_scene_folder(str(root), num_images=10, height=32, width=64)
  breaker(root)
  with pytest.raises(folder_checks.FolderCheckError) as raised:
    sources.open_split(_info(root), 'train', data_dir=str(data_dir))
  lines = raised.value.problems
  assert len(lines) == 1, lines
  for part in expected:
    assert part in lines[0], (part, lines[0])
  assert _files_in(str(data_dir)) == []


def test_several_problems_are_all_listed_and_the_message_stays_one_line(tmp_path):
  root = tmp_path / 'bad'
  folder_fakes.write_scene_folder(str(root), num_images=10, height=32, width=64)
  _break_size(root)
  _break_value(root)
  os.remove(root / 'masks' / 'val' / 'street_0001.png')
  with pytest.raises(folder_checks.FolderCheckError) as raised:
    sources.open_split(_info(root), 'train', data_dir=str(tmp_path / 'tfds'))
  lines = raised.value.problems
  assert len(lines) == 3
  assert 'street_0001.jpg' in lines[0] and 'street_0003.jpg is' in lines[1]
  assert 'values not in' in lines[2]
  assert str(raised.value) == lines[0] + f' (and 2 more problems with {root}, each on its own line above)'
  assert _files_in(str(tmp_path / 'tfds')) == []


def test_a_class_count_other_than_the_class_file_is_one_line_before_the_build(tmp_path):
  from hrnet_jax.data import loader  # pylint: disable=g-import-not-at-top
  root = tmp_path / 'streets'
  folder_fakes.write_scene_folder(str(root), num_images=5, height=32, width=64)
  config = ml_collections.ConfigDict({
      'data': dict(name='folder', root=str(root), classes=None, val_percent=20,
                   data_dir=str(tmp_path / 'tfds'), manual_dir=None,
                   train_split='train', eval_split='validation'),
      'model': dict(num_classes=5)})
  with pytest.raises(DataError, match=r'num_classes=5, but .*streets defines 19 classes '
                                      r'\(road, sidewalk, .*, \.\.\.\); set '
                                      r'--config.model.num_classes=19\.$'):
    loader.make_train_loader(config)
  assert not os.path.exists(tmp_path / 'tfds')          # refused before any build
  loader.check_class_count(_info(root), ml_collections.ConfigDict({'model': {'num_classes': 19}}))


def test_the_check_cli_prints_the_lines(tmp_path):
  root = tmp_path / 'bad'
  folder_fakes.write_scene_folder(str(root), num_images=5, height=32, width=64)
  _break_size(root)
  result = subprocess.run([sys.executable, '-m', 'hrnet_jax.data.folder', f'--root={root}',
                           '--check_only'], capture_output=True, text=True, check=False)
  assert result.returncode == 3
  assert 'street_0003.jpg is 20x30 but its mask' in result.stderr
  assert 'Traceback' not in result.stderr


# --- conversions --------------------------------------------------------------------

@pytest.mark.slow
def test_conversions_of_grey_16bit_rgba_palette_and_colour_inputs(tmp_path):
  root = tmp_path / 'odd'
  for sub in ('images/train', 'images/val', 'masks/train', 'masks/val'):
    os.makedirs(root / sub)
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 256, (8, 12, 3), np.uint8)
  grey16 = rng.integers(0, 65536, (8, 12), np.uint16)
  raw = rng.choice(np.array([7, 8, 0, 300], np.uint16), (8, 12))   # 300: 16-bit mask
  colours = np.array([(128, 64, 128), (244, 35, 232), (0, 0, 0)], np.uint8)
  idx = rng.integers(0, 3, (8, 12))
  (root / 'classes.txt').write_text(
      'road : 128 64 128 = 7\nsidewalk : #f423e8 = 8 300\nignore = 0\nignore : 0 0 0\n')
  cv2.imwrite(str(root / 'images/train/grey.png'), grey16)
  cv2.imwrite(str(root / 'masks/train/grey.png'), raw)
  Image.fromarray(np.dstack([rgb, np.full((8, 12), 255, np.uint8)])).save(
      root / 'images/train/rgba.png')
  Image.fromarray(colours[idx]).save(root / 'masks/train/rgba.png')
  rgb16 = rng.integers(0, 65536, (8, 12, 3), np.uint16)
  cv2.imwrite(str(root / 'images/train/rgb16.png'), rgb16)        # BGR order on disk
  cv2.imwrite(str(root / 'masks/train/rgb16.png'), np.full((8, 12), 7, np.uint8))
  Image.fromarray(rgb[..., 0]).save(root / 'images/val/gray8.png')
  pal = Image.fromarray(np.where(idx == 2, 0, 7 + idx).astype(np.uint8), mode='P')
  pal.putpalette([0, 0, 0] * 256)
  pal.save(root / 'masks/val/gray8.png')
  got = {e[0]: e for s in ('train', 'validation')
         for e in _examples(root, tmp_path / 'tfds', s)}
  # Independent references: value / 257 rounded; the class-file mappings by hand.
  expect_grey = np.round(grey16.astype(np.float64) / 257).astype(np.uint8)
  np.testing.assert_array_equal(got['grey'][2], np.dstack([expect_grey] * 3))
  np.testing.assert_array_equal(
      got['grey'][3], np.select([raw == 7, raw == 8, raw == 300], [0, 1, 1], 255))
  np.testing.assert_array_equal(got['rgba'][2], rgb[..., ::-1])    # BGR as decoded
  np.testing.assert_array_equal(got['rgb16'][2], (rgb16 >> 8).astype(np.uint8))
  np.testing.assert_array_equal(got['rgba'][3], np.where(idx == 2, 255, idx))
  np.testing.assert_array_equal(got['gray8'][2], np.dstack([rgb[..., 0]] * 3))
  np.testing.assert_array_equal(got['gray8'][3], np.where(idx == 2, 255, idx))
  report = folder_checks.check_folder(folder_layout.scan(str(root)),
                                      folder_classes.parse_class_file(str(root /
                                                                          'classes.txt')))
  notes = ' | '.join(report.lines())
  for note in ('16-bit grey scaled to 8 bits', 'opaque alpha dropped', 'grey copied to RGB',
               'colours mapped', '16-bit RGB reduced to 8 bits'):
    assert note in notes


@pytest.mark.parametrize('text, message', [
    ('road\nroad\n', ":2: class 'road' is listed twice"),
    ('road = 1\nsky\n', 'some classes give raw mask values'),
    ('road : 1 2\n', ':1: colour'),
    ('road = 1\nsky = 1\n', 'raw value 1 is given to both'),
    ('# nothing\n', 'no classes'),
    ('road\nsky\nignore = 1\n', 'ignored values [1] are also class ids'),
])
def test_class_file_mistakes_name_the_line(text, message, tmp_path):
  path = tmp_path / 'classes.txt'
  path.write_text(text)
  with pytest.raises(DataError, match=None) as raised:
    folder_classes.parse_class_file(str(path))
  assert message in str(raised.value) and str(path) in str(raised.value)


def test_class_file_values_ignore_and_colours(tmp_path):
  path = tmp_path / 'classes.txt'
  path.write_text('# comment\ntraffic light : #fa0a1e   # a comment\nroad = 3 4\n'
                  'ignore = 0\n')
  with pytest.raises(DataError, match='some classes give raw mask values'):
    folder_classes.parse_class_file(str(path))
  path.write_text('traffic light : #fa0a1e = 5  # a comment\nroad = 3 4\nignore = 0\n')
  table = folder_classes.parse_class_file(str(path))
  assert table.names == ('traffic light', 'road')
  assert table.colours == ((250, 10, 30), None)
  lut = table.value_lut(255)
  assert (lut[5], lut[3], lut[4], lut[0], lut[255], lut[1]) == (0, 1, 1, 255, -1, -1)


# --- classification from class-named folders (TFDS ImageFolder) -----------------------

@pytest.mark.slow
def test_image_folder_classification_through_tfds_image_folder(tmp_path):
  root = tmp_path / 'pets'
  colours = {'cat': (0, 0, 255), 'dog': (0, 255, 0), 'emu': (255, 0, 0)}   # BGR
  for split, n in (('train', 3), ('val', 2)):
    for cls, colour in colours.items():
      os.makedirs(root / split / cls)
      for i in range(n):
        cv2.imwrite(str(root / split / cls / f'{cls}{i}.png'),
                    np.full((10 + i, 12, 3), colour, np.uint8))
  info = _info(root, name='image_folder')
  assert info.task == 'classification' and info.class_names == ('cat', 'dog', 'emu')
  src = sources.open_split(info, 'validation', data_dir=str(tmp_path / 'tfds'))
  seen = []
  for i in range(len(src)):
    ex = src[i]
    image, label = sources.decode_classification(ex, info, 'x')
    name = ex['file_name'].decode()
    cls = name.split('/')[1]
    assert name.startswith('val/') and label == info.class_names.index(cls)
    np.testing.assert_array_equal(image[0, 0], colours[cls][::-1])
    seen.append(name)
  assert sorted(seen) == sorted(f'val/{c}/{c}{i}.png' for c in colours for i in range(2))
  # The classification task's train loader runs on it (configs/imagenet_w18_c.py).
  from configs import imagenet_w18_c  # pylint: disable=g-import-not-at-top
  from hrnet_jax import data  # pylint: disable=g-import-not-at-top
  config = imagenet_w18_c.get_config()
  config.data.name, config.data.root = 'image_folder', str(root)
  config.data.data_dir, config.data.num_workers = str(tmp_path / 'tfds'), 0
  config.data.crop_size, config.global_batch_size = (32, 32), 9
  with pytest.raises(DataError, match=r'num_classes=1000, but .* defines 3 classes '
                                      r'\(cat, dog, emu\); set --config.model.num_classes=3'):
    data.make_train_loader(config)
  config.model.num_classes = 3
  loader = data.make_train_loader(config)
  batch = next(loader)
  loader.close()
  assert batch['image'].shape == (9, 32, 32, 3)
  for image, label in zip(batch['image'], batch['label']):   # one colour per class
    rgb = colours[info.class_names[label]][::-1]
    assert np.abs(image.reshape(-1, 3).astype(int) - rgb).max() <= 2
  (root / 'train' / 'dog' / 'dog0.png').write_bytes(b'garbage')
  with pytest.raises(folder_checks.FolderCheckError, match='dog0.png: cannot read'):
    sources.open_split(_info(root, name='image_folder'), 'train',
                       data_dir=str(tmp_path / 'tfds2'))
  assert _files_in(str(tmp_path / 'tfds2')) == []


# --- browse ---------------------------------------------------------------------------

def test_browse_writes_the_sample_grid_and_the_class_frequency_chart(streets, tmp_path):
  root, data_dir, _, examples = streets
  out = tmp_path / 'browse'
  result = subprocess.run(
      [sys.executable, '-m', 'hrnet_jax.data.browse', '--config=configs/folder_seg.py',
       f'--config.data.root={root}', f'--config.data.data_dir={data_dir}', f'--out={out}',
       '--num_samples=6', '--columns=3'],
      capture_output=True, text=True, check=False,
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert result.returncode == 0, result.stderr[-3000:]
  grid = np.asarray(Image.open(out / 'samples.png'))
  crop = 128   # configs/folder_seg.py: 128x128 crops, each as image | overlay (gap 2)
  assert grid.shape == (2 * crop + 8, 3 * (2 * crop + 2) + 2 * 8, 3)
  chart = Image.open(out / 'class_frequency.png')
  assert chart.size[0] > 300 and chart.size[1] > 19 * 20
  with open(out / 'class_frequency.json') as f:
    counts = json.load(f)
  for split in ('train', 'validation'):   # independent count over the decoded labels
    labels = np.stack([e[3] for e in examples[split]])
    expected = np.bincount(labels.ravel(), minlength=256)
    assert [counts['counts'][split][n] for n in registry.CITYSCAPES_CLASSES] == (
        expected[:19].tolist())
    assert counts['ignored'][split] == expected[255]


# --- the documented run (multi-minute: slow tier) ---------------------------------------

def _one_cpu_env():
  """The user's environment: one CPU device, not the 8 the test session simulates."""
  env = dict(os.environ)
  flags = env.get('XLA_FLAGS', '').split()
  env['XLA_FLAGS'] = ' '.join(f for f in flags
                              if not f.startswith('--xla_force_host_platform_device_count'))
  return env


@pytest.mark.slow
def test_the_documented_folder_run_reaches_miou_0_7(tmp_path):
  """docs/custom_data.md step 3: 60 scenes, configs/folder_seg.py, mIoU >= 0.7 on val."""
  root = tmp_path / 'streets'
  folder_fakes.write_scene_folder(str(root), num_images=60)
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  result = subprocess.run(
      [sys.executable, 'train.py', '--config=configs/folder_seg.py',
       f'--workdir={tmp_path / "run"}', f'--config.data.root={root}',
       f'--config.data.data_dir={tmp_path / "tfds"}'],
      capture_output=True, text=True, check=False, cwd=repo, env=_one_cpu_env())
  assert result.returncode == 0, result.stderr[-5000:]
  with open(tmp_path / 'run' / 'final_metrics.json') as f:
    metrics = json.load(f)
  assert metrics['step'] == 500
  assert metrics['eval/mIoU'] >= 0.7, metrics


# --- fine-tuning on a folder with another class count -----------------------------------

@pytest.mark.slow
def test_a_checkpoint_of_another_class_count_loads_all_but_the_classifier(tmp_path, caplog):
  """configs/finetune_folder.py's premise: 19-class weights into a 5-class model."""
  import flax  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from hrnet_jax import checkpointing  # pylint: disable=g-import-not-at-top
  from hrnet_jax.models import create_model  # pylint: disable=g-import-not-at-top
  from hrnet_jax.training import sharding  # pylint: disable=g-import-not-at-top
  from hrnet_jax.training import step as ts  # pylint: disable=g-import-not-at-top

  def state_of(num_classes, seed):
    model = create_model('hrnet_w18_small_v1', head='seg', num_classes=num_classes)
    return ts.create_state(model, optax.sgd(0.1), seed=seed, mesh=sharding.make_mesh())[0]

  official = state_of(19, seed=1)
  checkpointing.save_model(
      str(tmp_path / 'w18_city'),
      {'params': jax.device_get(official.params),
       'batch_stats': jax.device_get(official.batch_stats)},
      dict(model='hrnet_w18_small_v1', head='seg', num_classes=19, options={},
           source='a converted official-format checkpoint'))
  variables, _ = checkpointing.load_model(str(tmp_path / 'w18_city'))
  fresh = state_of(5, seed=0)
  merged, report = ts.merge_pretrained(fresh, variables, source='w18_city')
  assert report['mismatched'] == [
      'params/head/classifier/bias (19,) vs (5,)',
      'params/head/classifier/kernel (1, 1, 240, 19) vs (1, 1, 240, 5)']
  assert report['fresh'] == [] and report['ignored'] == []
  # The absl logger's own level: an earlier test (or absl's set_verbosity) may have raised it.
  with caplog.at_level('INFO', logger='absl'):
    ts.log_init_report(report, 'w18_city')
  assert ('re-initialised, shape differs from the checkpoint (checkpoint vs model): '
          'params/head/classifier/bias (19,) vs (5,), params/head/classifier/kernel '
          '(1, 1, 240, 19) vs (1, 1, 240, 5)') in caplog.text
  assert '2 re-initialised (shape differs from the checkpoint)' in caplog.text

  def flat(tree):
    return {'/'.join(map(str, k)): v for k, v in
            flax.traverse_util.flatten_dict(jax.device_get(tree)).items()}

  got, ckpt, init = flat(merged.params), flat(official.params), flat(fresh.params)
  for name, value in got.items():
    expected = init[name] if name.startswith('head/classifier/') else ckpt[name]
    np.testing.assert_array_equal(value, expected, err_msg=name)
  assert len(report['loaded']) == len(got) - 2 + len(flat(merged.batch_stats))

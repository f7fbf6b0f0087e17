"""eval.py end to end on a synthetic validation set, its outputs, and its errors."""
import importlib.util
import json
import os

import jax
import numpy as np
import pytest
from PIL import Image

from hrnet_jax import data
from hrnet_jax.evaluation import outputs as eval_outputs
from hrnet_jax.evaluation import evaluator
from hrnet_jax.training import sharding
from hrnet_jax.data import registry

import eval_testlib as lib


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp('eval_cli')
  model, variables = lib.save_checkpoint(root / 'ckpt')
  config_path = lib.write_config(root / 'config.py', data_dir=root / 'tfds')
  return dict(root=root, model=model, variables=variables, config=config_path)


@pytest.mark.slow
def test_cli_writes_results_pictures_and_submission(setup):
  root = setup['root']
  out, sub = root / 'out', root / 'submission'
  res = lib.run_cli(['eval.py', f'--config={setup["config"]}', f'--checkpoint={root / "ckpt"}',
                     f'--workdir={out}', f'--submission_dir={sub}'])
  assert res.returncode == 0, res.stderr[-3000:]
  assert 'mIoU' in res.stdout and 'road' in res.stdout     # the table names the classes
  results = json.loads((out / 'eval_results.json').read_text())
  for key in ('mIoU', 'per_class_iou', 'pixel_accuracy', 'confusion_matrix', 'class_names'):
    assert key in results
  assert results['num_examples'] == 12                      # 8 + 4 (4 padded) examples
  cm = np.array(results['confusion_matrix'], np.float64)
  tp, gt, pred = np.diag(cm), cm.sum(1), cm.sum(0)
  assert results['mIoU'] == pytest.approx(np.mean(tp / np.maximum(1, gt + pred - tp)))
  assert os.path.isfile(out / 'per_class_iou.png')
  assert len(list((out / 'eval_pictures').glob('*_overlay.png'))) == 3
  assert list((out / 'tensorboard').iterdir())

  # The submission: one PNG per validation image, holding that image's prediction.
  config = lib_config(setup)
  loader = data.make_eval_loader(config)
  name_of = eval_outputs.example_names(config, registry.get_dataset_info(config.data.name))
  checked = 0
  for batch in loader:
    valid = np.flatnonzero(batch['mask'])
    expected = lib.reference_labels(setup['model'], setup['variables'], batch['image'][valid])
    for k, i in enumerate(valid):
      path = eval_outputs.submission_path(str(sub), name_of(int(batch['index'][i])))
      np.testing.assert_array_equal(np.asarray(Image.open(path)), expected[k])
      checked += 1
  assert checked == 12 and len(list(sub.iterdir())) == 12


def lib_config(setup):
  spec = importlib.util.spec_from_file_location('eval_test_config', setup['config'])
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


@pytest.mark.slow
def test_cli_missing_checkpoint_is_one_line(setup, tmp_path):
  res = lib.run_cli(['eval.py', f'--config={setup["config"]}',
                     f'--checkpoint={tmp_path / "nope"}', f'--workdir={tmp_path / "o"}'])
  assert res.returncode != 0
  last = res.stderr.strip().splitlines()[-1]
  assert last.startswith('error:') and 'no such checkpoint directory' in last
  assert 'Traceback' not in res.stderr


@pytest.mark.slow
def test_cli_checkpoint_config_mismatch_is_one_line(setup, tmp_path):
  config = lib.write_config(tmp_path / 'v2.py', data_dir=setup['root'] / 'tfds',
                            model_name='hrnet_w18_small_v2')
  res = lib.run_cli(['eval.py', f'--config={config}', f'--checkpoint={setup["root"] / "ckpt"}',
                     f'--workdir={tmp_path / "o"}'])
  assert res.returncode != 0 and 'Traceback' not in res.stderr
  last = res.stderr.strip().splitlines()[-1]
  assert 'hrnet_w18_small_v1' in last and 'hrnet_w18_small_v2' in last


@pytest.mark.slow
def test_empty_dataset_error(setup):
  config = lib_config(setup)
  mesh = sharding.make_mesh()
  with pytest.raises(evaluator.EmptyDatasetError, match='empty'):
    evaluator.evaluate(setup['model'], setup['variables'], [], config=config, mesh=mesh)
  # Only padding: still empty.
  padded = [{'image': np.zeros((8, 64, 128, 3), np.uint8),
             'label': np.full((8, 64, 128), 255, np.int32), 'mask': np.zeros(8, bool)}]
  with pytest.raises(evaluator.EmptyDatasetError):
    evaluator.evaluate(setup['model'], setup['variables'], padded, config=config, mesh=mesh)


def test_submission_maps_train_ids_back_to_cityscapes_label_ids(tmp_path):
  info = registry.get_dataset_info('cityscapes')
  # The facts file's table, labelId -> trainId, read the other way.
  official = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
              24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
  writer = eval_outputs.SubmissionWriter(
      str(tmp_path), name_of=lambda i: ['frankfurt_000000_000294', 'munster_000001_000019'][i],
      label_to_train_id=info.label_to_train_id, num_classes=19)
  preds = np.arange(2 * 4 * 5).reshape(2, 4, 5) % 19
  batch = {'mask': np.array([True, True]), 'index': np.array([0, 1]),
           'height': np.array([4, 3]), 'width': np.array([5, 5])}
  writer(batch, preds)
  first = np.asarray(Image.open(tmp_path / 'frankfurt' /
                                'frankfurt_000000_000294_leftImg8bit.png'))
  inverse = {v: k for k, v in official.items()}
  np.testing.assert_array_equal(first, np.vectorize(inverse.get)(preds[0]))
  second = np.asarray(Image.open(tmp_path / 'munster' / 'munster_000001_000019_leftImg8bit.png'))
  assert second.shape == (3, 5)                              # cut to the true size


@pytest.mark.slow
def test_per_image_path_equals_image_by_image_reference(setup):
  """Images of varying size padded into a batch are evaluated at their true size
  (`eval.size_buckets = False`; the fixed-shape default is tests/test_eval_buckets.py)."""
  model, variables = setup['model'], setup['variables']
  config = lib_config(setup)
  config.unlock()
  config.data.eval_pad_size = (96, 96)
  config.eval.size_buckets = False
  config.data.base_size = 96      # long side at scale 1: every image keeps its size
  rng = np.random.default_rng(5)
  sizes = [(64, 96), (96, 40)]
  batch = {'image': np.zeros((4, 96, 96, 3), np.uint8),
           'label': np.full((4, 96, 96), 255, np.int32), 'mask': np.array([1, 0, 1, 0], bool),
           'height': np.array([64, 0, 96, 0]), 'width': np.array([96, 0, 40, 0])}
  expected = np.zeros((19, 19), np.int64)
  for i, (h, w) in zip((0, 2), sizes):
    batch['image'][i, :h, :w] = rng.integers(0, 256, (h, w, 3))
    batch['label'][i, :h, :w] = rng.integers(0, 19, (h, w))
    pred = lib.reference_labels(model, variables, batch['image'][i, :h, :w])
    np.add.at(expected, (batch['label'][i, :h, :w], pred), 1)
  out = evaluator.evaluate(model, variables, [batch], config=config,
                          mesh=sharding.make_mesh(devices=jax.devices()[:2]))
  np.testing.assert_array_equal(out['confusion_matrix'], expected)
  assert [p[0].shape[:2] for p in out['pictures']] == sizes


@pytest.mark.slow
def test_variables_that_do_not_fit_the_named_model(tmp_path):
  # Variables of a 19-class model under metadata that claims 20 classes.
  model = lib.hrnet_jax.create_model(lib.MODEL, head='seg', num_classes=19)
  variables = lib.random_variables(model)
  from hrnet_jax import checkpointing, predict
  checkpointing.save_model(str(tmp_path / 'ckpt'), variables, dict(
      model=lib.MODEL, head='seg', num_classes=20, options={}, source='test'))
  with pytest.raises(predict.ModelMismatchError, match=r'shapes differ: .*19.*20'):
    predict.load_checkpoint_model(str(tmp_path / 'ckpt'))


@pytest.mark.slow
def test_resize_input_like_the_official_lip_testval(setup):
  """uint8 image resized by cv2 to a fixed size, prediction upsampled to the label size."""
  import cv2
  import torch
  import torch.nn.functional as F
  from hrnet_jax.evaluation import inference
  model, variables = setup['model'], setup['variables']
  config = lib_config(setup)
  config.unlock()
  config.data.eval_pad_size = (60, 60)
  config.data.base_size = 64
  config.eval.resize_input = (64, 64)
  rng = np.random.default_rng(7)
  image = rng.integers(0, 256, (60, 44, 3), dtype=np.uint8)
  label = rng.integers(0, 19, (60, 44)).astype(np.int32)
  batch = {'image': np.zeros((2, 60, 60, 3), np.uint8),
           'label': np.full((2, 60, 60), 255, np.int32), 'mask': np.array([True, False]),
           'height': np.array([60, 0]), 'width': np.array([44, 0])}
  batch['image'][0, :, :44], batch['label'][0, :, :44] = image, label
  out = evaluator.evaluate(model, variables, [batch], config=config,
                          mesh=sharding.make_mesh(devices=jax.devices()[:2]))
  resized = cv2.resize(image, (64, 64), interpolation=cv2.INTER_LINEAR)
  logits = np.asarray(jax.jit(model.apply)(variables, inference.normalize(resized[None])))
  t = torch.from_numpy(logits.transpose(0, 3, 1, 2).copy())
  probs = F.interpolate(t, size=(64, 64), mode='bilinear', align_corners=False).exp()
  pred = F.interpolate(probs, size=(60, 44), mode='bilinear', align_corners=False)[0].argmax(0)
  expected = np.zeros((19, 19), np.int64)
  np.add.at(expected, (label, pred.numpy()), 1)
  np.testing.assert_array_equal(out['confusion_matrix'], expected)

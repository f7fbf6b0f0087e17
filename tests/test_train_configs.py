"""Recipes in configs/, train.py's command line, and cityscapes_w48 on fake Cityscapes."""
import glob
import importlib.util
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hrnet_jax
from hrnet_jax import checkpointing
from hrnet_jax import data
from hrnet_jax.training import optim
from hrnet_jax.data import fakes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tests'))
from test_train_resume import child_env, train  # pylint: disable=g-import-not-at-top,wrong-import-position

# Every file that is a config (defines get_config); shared builders such as
# keypoints_common.py are imported by configs, not run.
CONFIGS = sorted(os.path.basename(p)[:-3]
                 for p in glob.glob(os.path.join(ROOT, 'configs', '*.py'))
                 if '\ndef get_config(' in open(p).read())


def load(name):
  sys.path.insert(0, ROOT)
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, 'configs',
                                                                   f'{name}.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_every_recipe_is_there():
  for name in ('quickstart', 'cityscapes_w48', 'cityscapes_w48_ohem',
               'cityscapes_w18_small_v1', 'cityscapes_w18_small_v2', 'cityscapes_ocr_w48',
               'pascal_context_w48', 'lip_w48', 'ade20k_w48', 'imagenet_w18_c'):
    assert name in CONFIGS


@pytest.mark.parametrize('name', CONFIGS)
def test_config_is_consistent(name):
  module = load(name)
  assert 'python train.py --config=configs/' in (module.__doc__ or ''), 'no run command'
  config = module.get_config()
  if config.data.name in data.registry.USER_FOLDER_MODULES:
    # Classes come from the user's folder (config.data.root), unknown here.
    assert 'config.model.num_classes' in module.__doc__ and config.data.root is None
  else:
    info = data.get_dataset_info(config.data.name)
    assert config.model.num_classes == info.num_classes
  assert config.model.name in hrnet_jax.VARIANTS
  if config.loss.class_weights:
    assert len(config.loss.class_weights) == config.model.num_classes
  if config.loss.chunk_images:
    assert config.global_batch_size % config.loss.chunk_images == 0
  hrnet_jax.create_model(config.model.name, head=config.model.head,
                         num_classes=config.model.num_classes)
  _, schedule = optim.make_optimizer(config.optimizer, config.num_train_steps)
  np.testing.assert_allclose(schedule(0), config.optimizer.learning_rate, rtol=1e-6)


def test_cityscapes_w48_is_the_official_recipe():
  c = load('cityscapes_w48').get_config()
  assert (c.model.name, c.model.head, c.model.num_classes) == ('hrnet_w48', 'seg', 19)
  assert c.global_batch_size == 12 and c.loss.chunk_images == 3
  assert tuple(c.data.crop_size) == (512, 1024) and c.data.base_size == 2048
  assert c.data.scale_factor == 16 and c.data.flip and c.data.multi_scale
  o = c.optimizer
  assert (o.name, o.learning_rate, o.momentum, o.nesterov, o.weight_decay) == (
      'sgd', 0.01, 0.9, False, 5e-4)
  assert (o.schedule, o.poly_power, o.warmup_steps) == ('poly', 0.9, 0)
  assert c.num_train_steps == 484 * (2975 // 12) == 119_548
  assert c.loss.class_weights[0] == 0.8373 and c.loss.class_weights[-1] == 1.0507
  assert not c.loss.ohem and load('cityscapes_w48_ohem').get_config().loss.ohem
  assert c.init_checkpoint.endswith('hrnetv2_w48_imagenet')


def test_imagenet_recipe_steps():
  c = load('imagenet_w18_c').get_config()
  per_epoch = 1_281_167 // 128
  assert c.optimizer.nesterov and c.optimizer.schedule == 'multistep'
  from hrnet_jax.training import optim  # pylint: disable=g-import-not-at-top
  assert optim.multistep_boundaries(c.optimizer) == (30 * per_epoch, 60 * per_epoch,
                                                     90 * per_epoch)
  assert c.num_train_steps == 100 * per_epoch


def _cli(*args):
  return subprocess.run([sys.executable, os.path.join(ROOT, 'train.py'), *args],
                        env=child_env(1), capture_output=True, text=True, timeout=300)


def test_mistyped_override_fails_with_one_clear_line(tmp_path):
  result = _cli('--config=configs/quickstart.py', f'--workdir={tmp_path}',
                '--config.optimizer.lernrate=0.1')
  assert result.returncode != 0
  lines = [l for l in result.stderr.splitlines() if l.strip()]
  assert len(lines) == 1, result.stderr
  assert 'lernrate' in lines[0] and 'learning_rate' in lines[0]


def _converted_imagenet_small(directory):
  """What the converter writes for hrnet_w18_small_model_v1.pth (random weights here)."""
  model = hrnet_jax.create_model('hrnet_w18_small_v1', head='cls', num_classes=1000)
  variables = jax.jit(lambda: model.init(jax.random.key(3), jnp.zeros((1, 64, 64, 3))))()
  checkpointing.save_model(directory, jax.device_get(variables), {
      'model': 'hrnet_w18_small_v1', 'head': 'cls', 'num_classes': 1000,
      'options': {}, 'source': 'test'})
  return jax.device_get(variables)


@pytest.mark.slow
def test_cityscapes_w48_runs_on_fake_cityscapes(tmp_path):
  manual = str(tmp_path / 'zips')
  fakes.write_fake_cityscapes(manual, images_per_split={'train': 3, 'val': 1, 'test': 1})
  imagenet = _converted_imagenet_small(str(tmp_path / 'imagenet'))
  workdir = tmp_path / 'run'
  result = train(
      workdir, '--config', 'cityscapes_w48',
      '--set', 'data.name=cityscapes', f'--set=data.manual_dir={manual}',
      f'--set=data.data_dir={tmp_path / "tfds"}', '--set', 'data.crop_size=(64,128)',
      '--set', 'data.base_size=2048', '--set', 'global_batch_size=3',
      '--set', 'loss.chunk_images=3', f'--set=init_checkpoint={tmp_path / "imagenet"}',
      '--set', 'num_train_steps=4', '--set', 'checkpoint.every_steps=2',
      '--set', 'eval.every_steps=0', '--set', 'eval.global_batch_size=1',
      '--set', 'eval.resize_input=(128,256)', devices=1)
  log = result.stderr
  assert 'variables loaded' in log and 'freshly initialised' in log
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['2', '4']
  assert os.listdir(workdir / 'best') == ['4']
  assert glob.glob(str(workdir / 'tensorboard' / 'events.out.tfevents.*'))
  assert glob.glob(str(workdir / 'pictures' / 'step_0000004.png'))
  variables, meta = checkpointing.load_model(str(workdir))
  assert (meta['model'], meta['head'], meta['num_classes'], meta['step']) == (
      'hrnet_w18_small_v1', 'seg', 19, 4)
  # The backbone started from the ImageNet checkpoint (a 4-step walk from it, not from
  # the seg init's normal(0.001)); the cls head was not loaded into the seg model.
  start = imagenet['params']['backbone']['conv1']['kernel']
  end = variables['params']['backbone']['conv1']['kernel']
  assert np.abs(end - start).max() < 0.1 * np.abs(start).max()
  assert set(variables['params']['head']) != set(imagenet['params']['head'])

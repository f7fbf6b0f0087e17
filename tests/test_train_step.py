"""The train step sharded over 8 simulated devices equals the 1-device step (SyncBN)."""
import importlib.util
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrnet_jax import data
from hrnet_jax import tasks
from hrnet_jax.training import optim
from hrnet_jax.training import sharding
from hrnet_jax.training import trainer
from hrnet_jax.training import step as ts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(name='default'):
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, 'configs',
                                                                   f'{name}.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def tiny_config(**overrides):
  config = load_config()
  config.model.name = 'hrnet_w18_small_v1'
  config.model.num_classes = 5
  config.loss.class_weights = (0.8, 1.2, 1.0, 0.9, 1.1)
  config.loss.chunk_images = 0
  config.global_batch_size = 8
  config.num_train_steps = 100
  config.optimizer.learning_rate = 0.05
  config.update_from_flattened_dict(overrides)   # keys like 'data.flip'
  return config


def tiny_batch(n=8, size=32, num_classes=5, seed=0):
  """Blocky images whose labels follow the red channel: coherent gradients.

  (With random labels the per-pixel gradients cancel and float32 summation order alone
  moves the gradients by more than 1e-5 relative; a learnable batch keeps the
  comparison about sharding, not about cancellation.)
  """
  rng = np.random.default_rng(seed)
  small = rng.integers(0, 256, (n, size // 4, size // 4, 3))
  image = np.repeat(np.repeat(small, 4, 1), 4, 2) + rng.integers(0, 20, (n, size, size, 3))
  image = np.clip(image, 0, 255).astype(np.uint8)
  label = (image[..., 0].astype(np.int32) * num_classes // 256).astype(np.int32)
  label[:, : size // 8] = 255
  return {'image': image, 'label': label}


class TinySeg(nn.Module):
  """conv-BN-ReLU, stride-2 conv: the step logic without HRNet's compile time."""
  num_classes: int = 5

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Conv(8, (3, 3), strides=2)(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
    return nn.Conv(self.num_classes, (3, 3), strides=2)(x)


def _setup(config, mesh, model=None):
  model = model or trainer.build_model(config)
  tx, schedule = optim.make_optimizer(config.optimizer, config.num_train_steps)
  state, shardings = ts.create_state(model, tx, seed=config.seed, mesh=mesh,
                                     fsdp=config.mesh.fsdp > 1)
  loss_fn = ts.make_loss_fn(model, tasks.task_for_config(config).make_loss(model, config))
  grad_fn = ts.make_grad_fn(loss_fn, int(config.grad_accum_steps))
  step = ts.jit_train_step(ts.make_train_step(grad_fn, tx, schedule, with_grads=True),
                           mesh, shardings)
  return state, step


def _run(config, mesh, batch, model=None):
  state, step = _setup(config, mesh, model)
  specs = [str(x.sharding.spec) for x in jax.tree.leaves(state.params)]
  state, metrics = step(state, sharding.global_batch(batch, mesh))
  out = jax.device_get({'loss': metrics['loss'], 'grads': metrics['grads'],
                        'params': state.params, 'batch_stats': state.batch_stats,
                        'opt_state': state.opt_state})
  return dict(out, param_specs=specs)


def assert_trees_close(actual, desired, rtol=1e-5):
  """Elementwise |a - d| <= rtol * (|d| + max|desired tree|).

  The absolute part is relative to the tree's largest entry: some gradients are zero
  in exact arithmetic (a conv bias right before a BatchNorm) and are pure float noise.
  """
  scale = max(float(np.abs(x).max()) for x in jax.tree.leaves(desired))
  flat_a = jax.tree_util.tree_leaves_with_path(actual)
  flat_d = jax.tree.leaves(desired)
  assert len(flat_a) == len(flat_d)
  for (path, a), d in zip(flat_a, flat_d):
    np.testing.assert_allclose(np.asarray(a), np.asarray(d), rtol=rtol, atol=rtol * scale,
                               err_msg=jax.tree_util.keystr(path))


@pytest.fixture(scope='module')
def one_device():
  config = tiny_config()
  mesh = sharding.make_mesh(config.mesh, devices=jax.devices()[:1])
  return _run(config, mesh, tiny_batch())


@pytest.mark.slow
def test_eight_devices_equal_one_device(one_device):
  config = tiny_config()
  mesh = sharding.make_mesh(config.mesh)
  assert mesh.devices.size == 8
  eight = _run(config, mesh, tiny_batch())
  np.testing.assert_allclose(eight['loss'], one_device['loss'], rtol=1e-5)
  assert_trees_close(eight['grads'], one_device['grads'])
  assert_trees_close(eight['batch_stats'], one_device['batch_stats'])
  assert_trees_close(eight['params'], one_device['params'])
  assert_trees_close(eight['opt_state'], one_device['opt_state'])


@pytest.mark.slow
def test_fsdp_mesh_equals_one_device():
  # Seed 1: seed 0's draw puts one output channel of the head's conv (the one sharded
  # over fsdp) into cancellation in its BatchNorm backward, and that column of the
  # gradient moves by 2e-4 of the tree's largest gradient with the layout (the
  # 8-device data-parallel run agrees to 5e-6); with seeds 1 and 2 everything agrees
  # to 4e-6.
  config = tiny_config(**{'mesh.fsdp': 2, 'seed': 1})
  mesh = sharding.make_mesh(config.mesh)
  out = _run(config, mesh, tiny_batch())
  single = tiny_config(seed=1)
  one_device = _run(single, sharding.make_mesh(single.mesh, devices=jax.devices()[:1]),
                    tiny_batch())
  assert any('fsdp' in spec for spec in out['param_specs']), 'nothing sharded over fsdp'
  assert any(spec == 'P()' for spec in out['param_specs']), 'small leaves split'

  np.testing.assert_allclose(out['loss'], one_device['loss'], rtol=1e-5)
  assert_trees_close(out['params'], one_device['params'])
  assert_trees_close(out['opt_state'], one_device['opt_state'])


def test_non_finite_loss_leaves_state_unchanged():
  config = tiny_config()
  mesh = sharding.make_mesh(config.mesh)
  state, step = _setup(config, mesh, TinySeg())
  # A NaN in one weight makes the loss NaN; the step must not apply it.
  last = dict(state.params['Conv_1'], bias=state.params['Conv_1']['bias'] * jnp.nan)
  bad = state.replace(params=dict(state.params, Conv_1=last))
  expected = jax.device_get((bad.params, bad.batch_stats, bad.opt_state))
  new, metrics = step(bad, sharding.global_batch(tiny_batch(), mesh))
  assert not bool(metrics['finite'])
  assert int(new.step) == 0
  got = jax.device_get((new.params, new.batch_stats, new.opt_state))
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(a, b)


def test_step_updates_the_donated_state_in_place():
  """No parameter or optimizer leaf is copied before its update (XLA's copy insertion
  added one per leaf when the skip-if-not-finite was a select per leaf)."""
  config = tiny_config(**{'optimizer.weight_decay': 1e-4})
  mesh = sharding.make_mesh(config.mesh, devices=jax.devices()[:1])
  state, step = _setup(config, mesh, TinySeg())
  hlo = step.lower(state, sharding.global_batch(tiny_batch(), mesh)).compile().as_text()
  entry = hlo.split('\nENTRY', 1)[1].split('\n}', 1)[0]
  copied = [line.split(' copy(', 1)[1].split(')')[0] for line in entry.splitlines()
            if ' copy(%state_params' in line or ' copy(%state_opt_state' in line]
  assert not copied, copied
  assert len(jax.tree.leaves(state.params)) >= 6


def test_grad_accumulation_averages_micro_batches():
  config = tiny_config(grad_accum_steps=2)
  mesh = sharding.make_mesh(config.mesh, devices=jax.devices()[:4])
  batch = tiny_batch()
  model = TinySeg()
  accumulated = _run(config, mesh, batch, model)
  full = _run(tiny_config(), mesh, batch, model)
  # Micro-batch j holds rows r with r % 2 == j; statistics flow from one to the next.
  half = tiny_config(global_batch_size=4)
  tx, _ = optim.make_optimizer(half.optimizer, half.num_train_steps)
  state, _ = ts.create_state(model, tx, seed=half.seed, mesh=mesh)
  loss_fn = ts.make_loss_fn(model, tasks.task_for_config(half).make_loss(model, half))
  grad_fn = jax.jit(ts.make_grad_fn(loss_fn, 1))
  rng = jax.random.key(0)
  l0, g0, s0 = grad_fn(state.params, state.batch_stats,
                       {k: v[0::2] for k, v in batch.items()}, rng)
  l1, g1, s1 = grad_fn(state.params, s0, {k: v[1::2] for k, v in batch.items()}, rng)
  np.testing.assert_allclose(accumulated['loss'], (l0 + l1) / 2, rtol=1e-5)
  assert_trees_close(accumulated['grads'], jax.tree.map(lambda a, b: (a + b) / 2, g0, g1))
  assert_trees_close(accumulated['batch_stats'], jax.device_get(s1))
  # Statistics of part of the batch (what per-device BatchNorm would keep, or one
  # micro-batch) are far outside the tolerance of the sharded-vs-one-device tests.
  with pytest.raises(AssertionError):
    assert_trees_close(jax.device_get(s0), full['batch_stats'])
  with pytest.raises(AssertionError):
    assert_trees_close(accumulated['batch_stats'], full['batch_stats'])



def test_merge_pretrained_loads_matching_variables_only():
  config = tiny_config()
  mesh = sharding.make_mesh(config.mesh, devices=jax.devices()[:2])
  tx, _ = optim.make_optimizer(config.optimizer, 10)
  state, _ = ts.create_state(TinySeg(), tx, seed=0, mesh=mesh)
  params = jax.device_get(state.params)
  other = {
      'params': {
          'Conv_0': {'kernel': np.full_like(params['Conv_0']['kernel'], 0.5),
                     'bias': np.zeros(3, np.float32)},          # wrong shape: kept fresh
          'classifier': {'kernel': np.ones((4, 4), np.float32)},  # not in the model
      },
      'batch_stats': {'BatchNorm_0': {'mean': np.full(8, 2.0, np.float32)}},
  }
  merged, report = ts.merge_pretrained(state, other, source='test')
  assert report['loaded'] == ['params/Conv_0/kernel', 'batch_stats/BatchNorm_0/mean']
  assert report['ignored'] == ['params/classifier/kernel']
  assert report['mismatched'] == ['params/Conv_0/bias (3,) vs (8,)']
  assert 'params/Conv_1/kernel' in report['fresh']
  np.testing.assert_array_equal(merged.params['Conv_0']['kernel'], 0.5)
  np.testing.assert_array_equal(merged.params['Conv_0']['bias'], params['Conv_0']['bias'])
  np.testing.assert_array_equal(merged.batch_stats['BatchNorm_0']['mean'], 2.0)
  assert merged.params['Conv_0']['kernel'].sharding == state.params['Conv_0']['kernel'].sharding
  with pytest.raises(ValueError, match='shares no variable'):
    ts.merge_pretrained(state, {'params': {'x': {'y': np.zeros(2)}}}, source='ckpt')


@pytest.mark.slow
def test_bfloat16_compute_keeps_float32_parameters(one_device):
  config = tiny_config(**{'model.dtype': 'bfloat16'})
  mesh = sharding.make_mesh(config.mesh, devices=jax.devices()[:1])
  out = _run(config, mesh, tiny_batch())
  assert all(x.dtype == np.float32 for x in jax.tree.leaves(out['params']))
  assert all(x.dtype == np.float32 for x in jax.tree.leaves(out['grads']))
  # bf16 has 8 bits of mantissa: the same step within bf16 precision, not bitwise.
  np.testing.assert_allclose(out['loss'], one_device['loss'], rtol=2e-2)
  assert out['loss'] != one_device['loss']


@pytest.mark.slow
def test_remat_gives_the_same_step(one_device):
  config = tiny_config(**{'model.remat': True})
  images = jnp.zeros((1, 32, 32, 3))

  def vjp_calls(model):  # rematerialised regions; BatchNorm's own custom VJP is in both
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), images))
    return str(jax.make_jaxpr(lambda v: model.apply(v, images, train=True,
                                                    mutable=['batch_stats']))(
        variables)).count('custom_vjp_call')
  assert vjp_calls(trainer.build_model(config)) - vjp_calls(
      trainer.build_model(tiny_config())) == 3   # one per module of the tiny model
  mesh = sharding.make_mesh(config.mesh, devices=jax.devices()[:1])
  out = _run(config, mesh, tiny_batch())
  np.testing.assert_allclose(out['loss'], one_device['loss'], rtol=1e-6)
  assert_trees_close(out['grads'], one_device['grads'])
  assert_trees_close(out['params'], one_device['params'])


class TinyCls(nn.Module):
  """conv-BN-ReLU, global pool, dense: the classification branch of the step."""

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Conv(8, (3, 3), strides=2)(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
    return nn.Dense(10)(jnp.mean(x, axis=(1, 2)))


def test_classification_step_uses_the_cross_entropy_of_the_labels():
  config = tiny_config(**{'task': 'classification', 'model.head': 'cls',
                          'model.num_classes': 10, 'loss.label_smoothing': 0.1})
  mesh = sharding.make_mesh(config.mesh)
  rng = np.random.default_rng(0)
  batch = {'image': rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8),
           'label': rng.integers(0, 10, 8).astype(np.int32)}
  model = TinyCls()
  state, step = _setup(config, mesh, model)
  variables = jax.device_get({'params': state.params, 'batch_stats': state.batch_stats})
  logits, _ = model.apply(variables, data.normalize(batch['image']), train=True,
                          mutable=['batch_stats'])
  logp = jax.nn.log_softmax(np.asarray(logits, np.float64))
  target = np.eye(10)[batch['label']] * 0.9 + 0.01
  want = -np.mean(np.sum(target * logp, axis=-1))
  _, metrics = step(state, sharding.global_batch(batch, mesh))
  np.testing.assert_allclose(metrics['loss'], want, rtol=1e-5)

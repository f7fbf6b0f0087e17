"""Model directories and training checkpoints: round trips, retention, errors."""
import asyncio
import gc
import json
import logging as std_logging
import os
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from hrnet_jax import checkpointing
from hrnet_jax.checkpointing import errors
from hrnet_jax.training import sharding

META = {'model': 'hrnet_w18_small_v1', 'head': 'seg', 'num_classes': 19,
        'options': {'upsample': 'bilinear', 'align_corners': False, 'bn_momentum': 0.01},
        'source': 'test', 'dataset': 'cityscapes'}


def _variables(seed=0):
  rng = np.random.default_rng(seed)
  return {'params': {'backbone': {'conv1': {'kernel': rng.normal(size=(3, 3, 3, 64))
                                            .astype(np.float32)}},
                     'head': {'conv': {'bias': rng.normal(size=(19,)).astype(np.float32)}}},
          'batch_stats': {'backbone': {'bn1': {'mean': rng.normal(size=(64,))
                                               .astype(np.float32)}}}}


def _assert_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_save_and_load_model_round_trip(tmp_path):
  variables = _variables()
  checkpointing.save_model(str(tmp_path / 'm'), variables, META)
  loaded, meta = checkpointing.load_model(str(tmp_path / 'm'))
  _assert_equal(loaded, variables)
  assert all(isinstance(x, np.ndarray) for x in jax.tree.leaves(loaded))
  assert meta == META
  with open(tmp_path / 'm' / 'metadata.json') as f:
    assert json.load(f)['model'] == 'hrnet_w18_small_v1'


def test_load_model_errors_are_one_line(tmp_path):
  cases = [
      (str(tmp_path / 'missing'), 'no such checkpoint directory'),
      (str(tmp_path), 'neither a model directory'),
  ]
  for path, text in cases:
    with pytest.raises(checkpointing.CheckpointError, match=text) as info:
      checkpointing.load_model(path)
    assert '\n' not in str(info.value)
  os.makedirs(tmp_path / 'broken' / 'variables')
  with open(tmp_path / 'broken' / 'metadata.json', 'w') as f:
    json.dump(META, f)
  with pytest.raises(checkpointing.CheckpointError, match='unreadable Orbax checkpoint'):
    checkpointing.load_model(str(tmp_path / 'broken'))
  with pytest.raises(checkpointing.CheckpointError, match="lacks \\['num_classes'\\]"):
    checkpointing.save_model(str(tmp_path / 'x'), _variables(),
                             {k: v for k, v in META.items() if k != 'num_classes'})
  checkpointing.save_model(str(tmp_path / 'twice'), _variables(), META)
  with pytest.raises(checkpointing.CheckpointError, match='already holds a model'):
    checkpointing.save_model(str(tmp_path / 'twice'), _variables(), META)


def _state(seed):
  params = jax.tree.map(jnp.asarray, _variables(seed)['params'])
  tx = optax.sgd(0.1, momentum=0.9)
  return {'step': jnp.asarray(seed, jnp.int32), 'params': params,
          'batch_stats': _variables(seed)['batch_stats'], 'opt_state': tx.init(params),
          'rng': jax.random.key_data(jax.random.key(seed))}


def test_training_checkpoints_keep_last_k_and_best(tmp_path):
  config = ml_collections.ConfigDict({'lr': 0.1})
  manager = checkpointing.TrainCheckpointManager(str(tmp_path), every_steps=2, keep=2)
  saved = [s for s in range(1, 9) if manager.save(
      s, _state(s), data_state={'next_step': s}, config=config, metadata=META)]
  assert saved == [2, 4, 6, 8]
  for step, miou in ((4, 0.5), (6, 0.7), (8, 0.6)):
    manager.save_best(step, _state(step), miou, data_state={'next_step': step},
                      config=config, metadata=META)
  manager.wait()
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['6', '8']
  assert os.listdir(tmp_path / 'best') == ['6']
  assert manager.best_score() == pytest.approx(0.7)
  manager.close()
  latest, meta = checkpointing.load_model(str(tmp_path))
  _assert_equal(latest['params'], _state(8)['params'])
  assert meta['step'] == 8 and meta['model'] == META['model']
  best, meta = checkpointing.load_model(str(tmp_path), which='best')
  _assert_equal(best['batch_stats'], _state(6)['batch_stats'])
  assert meta['step'] == 6
  single, meta = checkpointing.load_model(str(tmp_path / 'checkpoints' / '6'))
  assert meta['step'] == 6
  with open(tmp_path / 'checkpoints' / '8' / 'config' / 'metadata') as f:
    assert json.load(f) == {'lr': 0.1}


def test_restore_is_sharded_and_carries_the_data_state(tmp_path):
  mesh = sharding.make_mesh(ml_collections.ConfigDict({'fsdp': 2}))
  state = _state(3)
  shardings = sharding.state_shardings(mesh, state, fsdp=True, min_size=16)
  manager = checkpointing.TrainCheckpointManager(str(tmp_path), every_steps=1, keep=1)
  manager.save(3, jax.device_put(state, shardings), data_state=b'\x00grain-bytes',
               config=ml_collections.ConfigDict(), metadata=META)
  manager.wait()
  abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                          state, shardings)
  restored, data_state, step = manager.restore(abstract)
  manager.close()
  assert step == 3 and data_state == b'\x00grain-bytes'
  _assert_equal(restored, state)
  kernel = restored['params']['backbone']['conv1']['kernel']
  assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, None, None, 'fsdp')
  assert jax.tree.structure(restored['opt_state']) == jax.tree.structure(state['opt_state'])


def test_restore_without_checkpoint_is_an_error(tmp_path):
  manager = checkpointing.TrainCheckpointManager(str(tmp_path), every_steps=1, keep=1)
  assert manager.latest_step() is None
  with pytest.raises(checkpointing.CheckpointError, match='no checkpoint to restore'):
    manager.restore({})
  manager.close()


class _FailsInC:
  """An awaitable whose failure is raised in C (as a TensorStore read's): no frame of
  this file is in its traceback, only asyncio's."""

  def __await__(self):
    return map(int, ['not a number'])


def _never_retrieved_logs(make_awaitable):
  """What asyncio logs when a failed, never awaited task is collected."""
  records = []

  class Keep(std_logging.Handler):
    def emit(self, record):
      records.append(record)

  logger, handler = std_logging.getLogger('asyncio'), Keep()
  logger.addHandler(handler)
  loop = asyncio.new_event_loop()
  try:
    task = asyncio.ensure_future(make_awaitable(), loop=loop)
    loop.run_until_complete(asyncio.sleep(0.01))
    assert task.done()
    del task
    gc.collect()
  finally:
    loop.close()
    logger.removeHandler(handler)
  return [r for r in records if 'never retrieved' in r.getMessage()]


def test_abandoned_tensorstore_reads_are_not_printed_after_a_failed_read(monkeypatch):

  async def fails_in_python():
    raise ValueError('a user coroutine')

  monkeypatch.delenv('HRNET_DEBUG', raising=False)
  before = list(std_logging.getLogger('asyncio').filters)
  monkeypatch.setattr(sys, 'unraisablehook', sys.unraisablehook)
  # Without the guard, asyncio logs both.
  assert len(_never_retrieved_logs(_FailsInC)) == 1
  assert len(_never_retrieved_logs(fails_in_python)) == 1
  with pytest.raises(RuntimeError):
    with errors.abandoned_reads_quiet():
      raise RuntimeError('the read failed')
  try:
    # After the failed read, the TensorStore-like failure is dropped; a failure with
    # frames of other code is still logged.
    assert not _never_retrieved_logs(_FailsInC)
    assert len(_never_retrieved_logs(fails_in_python)) == 1
    monkeypatch.setenv('HRNET_DEBUG', '1')
    assert len(_never_retrieved_logs(_FailsInC)) == 1
  finally:
    logger = std_logging.getLogger('asyncio')
    for extra in [f for f in logger.filters if f not in before]:
      logger.removeFilter(extra)

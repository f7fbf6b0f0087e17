"""Train/eval loaders: determinism, exact resume in a new process, sharding, eval counts."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from configs import default
from hrnet_jax import data
from hrnet_jax.data import sources

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Builds are deterministic, so the tiny synthetic set is cached across test runs.
TFDS_DIR = os.environ.get('HRNET_TEST_TFDS_DIR', os.path.join(
    os.path.expanduser('~'), '.cache', 'hrnet-jax-tests-tfds'))


def tiny_config(**overrides):
  config = default.get_config()
  config.data.name = 'hrnet_synthetic_tiny'      # 64x128 images, 24 train / 12 validation
  config.data.data_dir = TFDS_DIR
  config.data.crop_size = (32, 48)
  config.data.base_size = 128
  config.data.scale_factor = 10
  config.data.num_workers = 0
  config.global_batch_size = 6
  config.eval.global_batch_size = 4
  config.seed = 7
  config.update_from_flattened_dict(overrides)   # keys like 'data.flip'
  return config


def take(loader, n):
  return [next(loader) for _ in range(n)]


def assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


@pytest.fixture(scope='module', autouse=True)
def built():
  sources.get_builder(data.get_dataset_info('hrnet_synthetic_tiny'), data_dir=TFDS_DIR)


def test_batch_contents():
  loader = data.make_train_loader(tiny_config())
  batch = next(loader)
  assert batch['image'].shape == (6, 32, 48, 3) and batch['image'].dtype == np.uint8
  assert batch['label'].shape == (6, 32, 48) and batch['label'].dtype == np.int32
  values = set(np.unique(batch['label']).tolist())
  assert values <= set(range(19)) | {255} and len(values) > 3
  assert loader.steps_per_epoch == 4 and loader.num_examples == 24


def test_same_seed_same_batches_other_seed_other_batches():
  a = take(data.make_train_loader(tiny_config()), 6)
  b = take(data.make_train_loader(tiny_config()), 6)
  c = take(data.make_train_loader(tiny_config(seed=8)), 6)
  assert_batches_equal(a, b)
  assert not np.array_equal(a[0]['image'], c[0]['image'])
  # Two epochs of the same data are shuffled and augmented differently.
  assert not np.array_equal(a[0]['image'], a[4]['image'])


_RESUME_SCRIPT = textwrap.dedent('''
    import json, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from test_data_loader import tiny_config
    from hrnet_jax import data

    def main():
      states = json.loads(sys.argv[1])
      out = {{}}
      for i, state in enumerate(states):
        # Worker processes for the first restore only: each start costs seconds.
        loader = data.make_train_loader(tiny_config(**{{'data.num_workers': 2 if i == 0 else 0}}))
        loader.set_state(state)
        batch = next(loader)
        out[f'image{{i}}'], out[f'label{{i}}'] = batch['image'], batch['label']
        out[f'state{{i}}'] = np.frombuffer(json.dumps(loader.get_state()).encode(), np.uint8)
        loader.close()
      np.savez(sys.argv[2], **out)

    if __name__ == '__main__':
      main()
''')


@pytest.mark.slow
def test_state_restored_in_a_new_process_gives_exactly_the_next_batch(tmp_path):
  """Mid-epoch (step 2 of 4) and across the epoch boundary (steps 4 and 5).

  The new process reads the first one with 2 grain worker processes, this one with none:
  the stream must not depend on the worker count either.
  """
  loader = data.make_train_loader(tiny_config())
  states, expected = {}, {}
  for step in range(7):
    if step in (2, 4, 5):
      states[step] = json.loads(json.dumps(loader.get_state()))   # as a checkpoint stores it
    batch = next(loader)
    if step in states:
      expected[step] = batch
  script = tmp_path / 'resume.py'
  script.write_text(_RESUME_SCRIPT.format(tests=os.path.join(REPO, 'tests')))
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
  steps = sorted(states)
  result = subprocess.run(
      [sys.executable, str(script), json.dumps([states[s] for s in steps]),
       str(tmp_path / 'out.npz')], env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  out = np.load(tmp_path / 'out.npz')
  for i, step in enumerate(steps):
    np.testing.assert_array_equal(out[f'image{i}'], expected[step]['image'], err_msg=step)
    np.testing.assert_array_equal(out[f'label{i}'], expected[step]['label'], err_msg=step)
    assert json.loads(out[f'state{i}'].tobytes())['next_step'] == step + 1


def test_state_mismatch_is_rejected():
  state = data.make_train_loader(tiny_config()).get_state()
  other = data.make_train_loader(tiny_config(seed=3))
  with pytest.raises(data.DataError, match='seed'):
    other.set_state(state)


@pytest.mark.parametrize('process_count', [2, 3])
def test_process_shards_are_disjoint_cover_the_split_and_form_the_global_batch(process_count):
  config = tiny_config()
  whole = data.make_train_loader(config)
  shards = [data.make_train_loader(config, process_index=p, process_count=process_count)
            for p in range(process_count)]
  b = 6 // process_count
  for epoch in range(2):
    seen = []
    for p, shard in enumerate(shards):
      fn = shard._fn   # the record each local position reads
      records = [fn.record_at(epoch * 4 * b + i)[1] for i in range(4 * b)]
      seen.append(set(records))
      assert len(records) == len(set(records))
    for p in range(process_count):
      for q in range(p):
        assert not seen[p] & seen[q]
    assert set().union(*seen) == set(range(24))
  # The local batches, concatenated in process order, are the 1-process global batch.
  for _ in range(5):
    local = [next(s) for s in shards]
    glob = next(whole)
    for key in ('image', 'label'):
      np.testing.assert_array_equal(np.concatenate([l[key] for l in local]), glob[key])
      assert all(l[key].shape[0] == b for l in local)


def test_drop_last_drops_a_different_remainder_each_epoch():
  loader = data.make_train_loader(tiny_config(global_batch_size=5))   # 24 = 4 * 5 + 4
  assert loader.steps_per_epoch == 4
  fn = loader._fn
  epochs = [[fn.record_at(e * 20 + i)[1] for i in range(20)] for e in range(3)]
  for records in epochs:
    assert len(set(records)) == 20
  assert len({frozenset(set(range(24)) - set(r)) for r in epochs}) > 1


@pytest.mark.parametrize('process_count', [1, 2, 3])
def test_eval_counts_every_example_exactly_once(process_count):
  config = tiny_config(**{'eval.global_batch_size': 2 * process_count,
                          'data.max_eval_examples': 11})
  source = sources.open_split(data.get_dataset_info('hrnet_synthetic_tiny'), 'validation',
                              data_dir=TFDS_DIR)
  info = data.get_dataset_info('hrnet_synthetic_tiny')
  loaders = [data.make_eval_loader(config, process_index=p, process_count=process_count)
             for p in range(process_count)]
  lengths = {len(l) for l in loaders}
  assert lengths == {int(np.ceil(11 / (2 * process_count)))}
  counted = []
  for loader in loaders:
    batches = list(loader)
    assert len(batches) == len(loader)
    for batch in batches:
      assert batch['image'].shape == (2, 64, 128, 3) and batch['mask'].dtype == bool
      for i in range(2):
        if not batch['mask'][i]:
          assert batch['index'][i] == -1 and (batch['label'][i] == 255).all()
          assert batch['height'][i] == 0 and not batch['image'][i].any()
          continue
        index = int(batch['index'][i])
        counted.append(index)
        image, label = sources.decode_segmentation(source[index], info, 'x')
        np.testing.assert_array_equal(batch['image'][i], image[..., ::-1])   # BGR -> RGB
        np.testing.assert_array_equal(batch['label'][i], label)
        assert (batch['height'][i], batch['width'][i]) == (64, 128)
  assert sorted(counted) == list(range(11))


def test_eval_pads_to_a_configured_size():
  config = tiny_config(**{'data.eval_pad_size': (72, 136)})
  batch = next(iter(data.make_eval_loader(config)))
  assert batch['image'].shape == (4, 72, 136, 3)
  assert (batch['label'][:, 64:] == 255).all() and (batch['label'][:, :, 128:] == 255).all()
  assert not batch['image'][:, 64:].any()
  config = tiny_config(**{'data.eval_pad_size': (32, 136)})
  with pytest.raises(data.DataError, match='eval_pad_size'):
    next(iter(data.make_eval_loader(config)))


def test_bad_batch_sizes_and_names_fail_with_one_line():
  with pytest.raises(data.DataError, match='multiple of the number of processes'):
    data.make_train_loader(tiny_config(), process_index=0, process_count=4)
  with pytest.raises(data.DataError, match='unknown dataset'):
    data.make_train_loader(tiny_config(**{'data.name': 'citiscapes'}))
  with pytest.raises(data.DataError, match='no split'):
    data.make_eval_loader(tiny_config(**{'data.eval_split': 'val'}))

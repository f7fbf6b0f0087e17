"""Confusion-matrix metrics against independent numpy, on 1 and 8 devices and 2 processes."""
import json
import os
import socket
import subprocess
import sys
import textwrap
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrnet_jax.evaluation import metrics
from hrnet_jax.training import sharding

NUM_CLASSES = 6
IGNORE = 255


def _random_set(seed, n=21, h=12, w=10):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, NUM_CLASSES, (n, h, w)).astype(np.int32)
  labels[rng.random((n, h, w)) < 0.2] = IGNORE
  # Predictions agree with the labels often enough for IoUs far from 0 and 1.
  preds = np.where(rng.random((n, h, w)) < 0.6, labels, rng.integers(0, NUM_CLASSES, (n, h, w)))
  preds = np.where(preds == IGNORE, 0, preds).astype(np.int32)
  return preds, labels


def _numpy_miou(preds, labels):
  """IoU per class straight from pixel sets, as tp / (gt + pred - tp) with max(1, .)."""
  valid = labels != IGNORE
  ious = []
  for c in range(NUM_CLASSES):
    gt = (labels == c) & valid
    pr = (preds == c) & valid
    inter = np.sum(gt & pr)
    union = np.sum(gt | pr)
    ious.append(inter / max(1, union))
  acc = np.sum((preds == labels) & valid) / np.sum(valid)
  return float(np.mean(ious)), np.array(ious), float(acc)


def _batches(preds, labels, batch):
  """Padded batches with a mask; padded rows hold real-looking data that must not count."""
  n = len(preds)
  steps = -(-n // batch)
  for s in range(steps):
    idx = np.arange(s * batch, (s + 1) * batch)
    mask = idx < n
    take = np.where(mask, idx, 0)
    yield preds[take], labels[take], mask


def _confusion_over(mesh, preds, labels, batch):
  fn = jax.jit(metrics.confusion_matrix_fn(mesh, num_classes=NUM_CLASSES, ignore_label=IGNORE))
  acc = metrics.ConfusionMatrix(NUM_CLASSES)
  for p, l, m in _batches(preds, labels, batch):
    spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(metrics.batch_axes(mesh)))
    acc.add(fn(*(jax.device_put(a, spec) for a in (p, l, m))))
  return acc.result()


def test_local_confusion_matrix_equals_numpy_bincount():
  preds, labels = _random_set(0)
  got = np.asarray(metrics.local_confusion_matrix(
      jnp.asarray(preds), jnp.asarray(labels), num_classes=NUM_CLASSES, ignore_label=IGNORE))
  expected = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
  valid = labels != IGNORE
  np.add.at(expected, (labels[valid], preds[valid]), 1)
  np.testing.assert_array_equal(got, expected)


def test_miou_matches_independent_numpy_and_is_device_count_invariant():
  preds, labels = _random_set(1)
  miou, ious, acc = _numpy_miou(preds, labels)
  one = _confusion_over(sharding.make_mesh(devices=jax.devices()[:1]), preds, labels, batch=8)
  eight = _confusion_over(sharding.make_mesh(), preds, labels, batch=8)
  fsdp = _confusion_over(sharding.make_mesh(types.SimpleNamespace(fsdp=2)), preds, labels,
                         batch=16)
  np.testing.assert_array_equal(one, eight)
  np.testing.assert_array_equal(one, fsdp)
  out = metrics.segmentation_metrics(eight)
  assert out['mIoU'] == pytest.approx(miou, abs=1e-12)
  np.testing.assert_allclose(out['per_class_iou'], ious, atol=1e-12)
  assert out['pixel_accuracy'] == pytest.approx(acc, abs=1e-12)
  # 21 examples in batches of 8: the padded rows of the last batch must not count.
  assert out['num_pixels'] == int(np.sum(labels != IGNORE))


def test_absent_class_counts_as_zero_like_the_official_code():
  labels = np.zeros((1, 4, 4), np.int32)
  preds = np.zeros((1, 4, 4), np.int32)
  cm = np.asarray(metrics.local_confusion_matrix(jnp.asarray(preds), jnp.asarray(labels),
                                                 num_classes=3, ignore_label=IGNORE))
  out = metrics.segmentation_metrics(cm)
  assert out['per_class_iou'] == [1.0, 0.0, 0.0]
  assert out['mIoU'] == pytest.approx(1.0 / 3.0)
  assert out['present'] == [True, False, False]


def test_topk_matches_numpy():
  rng = np.random.default_rng(3)
  logits = rng.normal(size=(24, 10)).astype(np.float32)
  labels = rng.integers(0, 10, 24).astype(np.int32)
  mask = np.arange(24) < 19
  mesh = sharding.make_mesh()
  spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(metrics.batch_axes(mesh)))
  counts = jax.jit(metrics.topk_fn(mesh))(*(jax.device_put(a, spec) for a in (logits, labels, mask)))
  out = metrics.classification_metrics(np.asarray(counts))
  order = np.argsort(-logits, axis=1)
  top1 = np.mean((order[:, 0] == labels)[mask])
  top5 = np.mean(np.any(order[:, :5] == labels[:, None], axis=1)[mask])
  assert out['num_examples'] == 19
  assert out['top1'] == pytest.approx(top1)
  assert out['top5'] == pytest.approx(top5)


_WORKER = textwrap.dedent('''
  import json, os, sys
  os.environ['JAX_PLATFORMS'] = 'cpu'
  os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=4'
  import jax
  import numpy as np
  pid, port = int(sys.argv[1]), sys.argv[2]
  jax.distributed.initialize(coordinator_address=f'127.0.0.1:{port}', num_processes=2,
                             process_id=pid)
  sys.path.insert(0, sys.argv[3])
  import test_metrics as t
  from hrnet_jax.evaluation import metrics
  from hrnet_jax.training import sharding
  preds, labels = t._random_set(1)
  mine = np.arange(len(preds)) % 2 == pid    # 11 and 10 examples: uneven
  p, l = preds[mine], labels[mine]
  mesh = sharding.make_mesh()
  fn = jax.jit(metrics.confusion_matrix_fn(mesh, num_classes=t.NUM_CLASSES,
                                           ignore_label=t.IGNORE))
  acc = metrics.ConfusionMatrix(t.NUM_CLASSES)
  steps = 3    # the same number of steps on both processes, as the eval loader pads
  for s in range(steps):
    idx = np.arange(s * 4, (s + 1) * 4)
    m = idx < len(p)
    take = np.where(m, idx, 0)
    acc.add(fn(*(sharding.global_batch({'x': a}, mesh)['x'] for a in (p[take], l[take], m))))
  print('RESULT' + json.dumps(acc.result().tolist()), flush=True)

  # The whole evaluate(): sharded batches, then image by image (varying-size datasets).
  from hrnet_jax.evaluation import evaluator
  model, variables, images, labels, config = t._tiny_eval_setup()
  mine = np.arange(len(images)) % 2 == pid
  batches = t._eval_batches(images[mine], labels[mine], 4)[:3]
  out = evaluator.evaluate(model, variables, batches, config=config, mesh=mesh)
  print('BATCHED' + json.dumps(out['confusion_matrix'].tolist()), flush=True)
  config.data.eval_pad_size = (32, 48)
  out = evaluator.evaluate(model, variables, batches, config=config, mesh=mesh)
  print('PERIMAGE' + json.dumps(out['confusion_matrix'].tolist()), flush=True)
''')


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_give_the_single_process_matrix(tmp_path):
  """2 processes x 4 devices, 11 and 10 examples: counts, evaluate(), per-image path."""
  preds, labels = _random_set(1)
  single = _confusion_over(sharding.make_mesh(), preds, labels, batch=8)
  from hrnet_jax.evaluation import evaluator
  model, variables, images, eval_labels, config = _tiny_eval_setup()
  single_eval = evaluator.evaluate(model, variables, _eval_batches(images, eval_labels, 8),
                                  config=config, mesh=sharding.make_mesh())['confusion_matrix']
  port = _free_port()
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
       os.environ.get('PYTHONPATH', '')]))
  env.pop('XLA_FLAGS', None)
  tests_dir = os.path.dirname(os.path.abspath(__file__))
  procs = [subprocess.Popen([sys.executable, '-c', _WORKER, str(i), str(port), tests_dir],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
           for i in range(2)]
  outs = [p.communicate(timeout=240) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  for out, err in outs:
    for tag, expected in (('RESULT', single), ('BATCHED', single_eval),
                          ('PERIMAGE', single_eval)):
      # Anywhere in a line: a library may have left an unterminated line on stdout.
      found = [l[l.index(tag) + len(tag):] for l in out.splitlines() if tag in l]
      assert found, f'no {tag} line; stdout:\n{out[-2000:]}\nstderr:\n{err[-2000:]}'
      np.testing.assert_array_equal(np.array(json.loads(found[0])), expected)


def test_evaluate_classification_top1_top5():
  import flax.linen as nn
  import ml_collections
  from hrnet_jax.evaluation import evaluator, inference

  class Linear(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
      return nn.Dense(10)(x.reshape(x.shape[0], -1))

  model = Linear()
  variables = model.init(jax.random.key(0), jnp.zeros((1, 4, 4, 3)))
  rng = np.random.default_rng(4)
  images = rng.integers(0, 256, (21, 4, 4, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, 21).astype(np.int32)
  batches = []
  for s in range(3):
    idx = np.arange(s * 8, s * 8 + 8)
    mask = idx < 21
    take = np.where(mask, idx, 0)
    batches.append({'image': images[take], 'label': labels[take], 'mask': mask})
  config = ml_collections.ConfigDict({
      'task': 'classification', 'model': {'head': 'cls', 'num_classes': 10},
      'data': {'ignore_label': 255, 'name': 'x'},
      'eval': {'num_pictures': 0}})
  out = evaluator.evaluate(model, variables, batches, config=config, mesh=sharding.make_mesh())
  logits = np.asarray(model.apply(variables, inference.normalize(images)))
  order = np.argsort(-logits, axis=1)
  assert out['num_examples'] == 21
  assert out['top1'] == pytest.approx(np.mean(order[:, 0] == labels))
  assert out['top5'] == pytest.approx(np.mean(np.any(order[:, :5] == labels[:, None], 1)))


def _tiny_eval_setup():
  """A tiny conv net, 21 images and an ms + flip + padded-window protocol config."""
  import ml_collections
  from eval_testlib import TinySeg

  model = TinySeg(NUM_CLASSES)
  variables = model.init(jax.random.key(2), jnp.zeros((1, 32, 48, 3)))
  rng = np.random.default_rng(6)
  images = rng.integers(0, 256, (21, 32, 48, 3), dtype=np.uint8)
  labels = rng.integers(0, NUM_CLASSES, (21, 32, 48)).astype(np.int32)
  labels[:, :4] = IGNORE
  config = ml_collections.ConfigDict({
      'task': 'segmentation',
      'model': {'head': 'seg', 'num_classes': NUM_CLASSES, 'align_corners': False},
      'data': {'ignore_label': IGNORE, 'name': 'x', 'base_size': 48, 'eval_pad_size': None},
      'eval': {'num_pictures': 2, 'mode': 'sliding', 'crop_size': (32, 32),
               'stride_rate': 2.0 / 3.0, 'window_layout': 'pad', 'scales': (0.75, 1.0),
               'flip': True}})
  return model, variables, images, labels, config


def _eval_batches(images, labels, batch):
  return [{'image': p, 'label': l, 'mask': m, 'height': np.full(len(m), 32),
           'width': np.full(len(m), 48)} for p, l, m in _batches(images, labels, batch)]


def test_evaluate_is_identical_on_1_and_8_devices():
  """The whole evaluation (protocol + counting) with an uneven, padded last batch."""
  from hrnet_jax.evaluation import evaluator
  model, variables, images, labels, config = _tiny_eval_setup()
  batches = _eval_batches(images, labels, 8)
  one = evaluator.evaluate(model, variables, batches, config=config,
                          mesh=sharding.make_mesh(devices=jax.devices()[:1]))
  eight = evaluator.evaluate(model, variables, batches, config=config, mesh=sharding.make_mesh())
  np.testing.assert_array_equal(one['confusion_matrix'], eight['confusion_matrix'])
  assert one['num_examples'] == eight['num_examples'] == 21
  assert eight['confusion_matrix'].sum() == np.sum(labels != IGNORE)
  assert one['mIoU'] == eight['mIoU']

"""Fixed-shape evaluation of images of varying size (hrnet_jax/evaluation/bucketed.py).

The reference is `inference.predict_probs` at the true image size, which
tests/test_eval_protocol.py checks against a rewrite of the official test code.
"""
import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import eval_testlib  # also puts the repository on sys.path for `configs`
from configs import default
from hrnet_jax.evaluation import bucketed
from hrnet_jax.evaluation import inference
from hrnet_jax.tasks import segmentation_eval
from hrnet_jax.training import sharding

IGNORE = 255


@contextlib.contextmanager
def lowered_programs():
  """Names of the programs jax lowers (each then compiles) inside the block."""
  names = []

  def listener(event, duration, **kwargs):
    del duration
    if event == '/jax/core/compile/jaxpr_to_mlir_module_duration':
      names.append(kwargs.get('fun_name'))

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield names
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)


def _model(num_classes, seed=1):
  model = eval_testlib.TinySeg(num_classes)
  return model, model.init(jax.random.key(seed), jnp.zeros((1, 32, 32, 3)))


def _images(sizes, num_classes, seed=0):
  rng = np.random.default_rng(seed)
  for h, w in sizes:
    yield (rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
           rng.integers(0, num_classes, (h, w)).astype(np.int32))


def _reference(model, variables, protocol, image, out_size=None):
  fn = jax.jit(lambda v, x: inference.predict_probs(
      lambda vv, xx: model.apply(vv, xx), v, x, protocol, out_size=out_size))
  return np.asarray(fn(variables, image[None]))[0]


def _confusion(label, pred, num_classes):
  cm = np.zeros((num_classes, num_classes), np.int64)
  keep = label != IGNORE
  np.add.at(cm, (label[keep], pred[keep]), 1)
  return cm


def _config(pad_size, *, num_classes, buckets=True, resize_input=None):
  config = default.get_config()
  config.model.num_classes = num_classes
  config.data.ignore_label = IGNORE
  config.data.eval_pad_size = pad_size
  config.eval.resize_input = resize_input
  config.eval.size_buckets = buckets
  return config


def _evaluate(model, variables, protocol, config, examples, batch=8):
  """SegmentationEvaluator over images of varying size padded into batches."""
  mesh = sharding.make_mesh(devices=jax.devices()[:1])
  ev = segmentation_eval.SegmentationEvaluator(model, variables, config=config, mesh=mesh,
                                               protocol=protocol)
  pad = tuple(config.data.eval_pad_size)
  with lowered_programs() as names:
    for start in range(0, len(examples), batch):
      part = examples[start:start + batch]
      b = {'image': np.zeros((batch,) + pad + (3,), np.uint8),
           'label': np.full((batch,) + pad, IGNORE, np.int32),
           'mask': np.arange(batch) < len(part),
           'height': np.zeros(batch, np.int32), 'width': np.zeros(batch, np.int32)}
      for i, (image, label) in enumerate(part):
        h, w = label.shape
        b['image'][i, :h, :w], b['label'][i, :h, :w] = image, label
        b['height'][i], b['width'][i] = h, w
      ev.update(b)
    matrix = ev.result()['confusion_matrix']
  return matrix, names


# The PASCAL-Context protocol in small: 'pad' windows at stride 2/3 of the crop,
# multi-scale with flip, align_corners of the OCR branch.
PASCAL_LIKE = inference.Protocol(scales=(0.75, 1.25), flip=True, mode='sliding',
                                 crop_size=(24, 24), window_layout='pad', base_size=None,
                                 align_corners=True)


def _distinct_sizes(n, lo, hi, seed=3):
  rng = np.random.default_rng(seed)
  sizes = []
  while len(sizes) < n:
    size = tuple(int(x) for x in rng.integers(lo, hi + 1, 2))
    if size not in sizes:
      sizes.append(size)
  return sizes


def test_compilations_depend_on_the_scales_not_on_the_image_sizes():
  num_classes = 4
  model, variables = _model(num_classes)
  sizes = _distinct_sizes(40, 12, 64)
  examples = list(_images(sizes, num_classes))
  config = _config((64, 64), num_classes=num_classes)
  matrix, names = _evaluate(model, variables, PASCAL_LIKE, config, examples)
  # One preparation, one network (a single window shape), one finishing step per scale.
  assert len(names) <= 2 * len(PASCAL_LIKE.scales), names
  expected = sum(_confusion(label, _reference(model, variables, PASCAL_LIKE, image).argmax(-1),
                            num_classes) for image, label in examples)
  np.testing.assert_array_equal(matrix, expected)
  # The true-size path compiles the protocol once per distinct size (8 of them here).
  old = _config((64, 64), num_classes=num_classes, buckets=False)
  old_matrix, old_names = _evaluate(model, variables, PASCAL_LIKE, old, examples[:8])
  assert len(old_names) >= 8, old_names
  np.testing.assert_array_equal(
      old_matrix, sum(_confusion(label, _reference(model, variables, PASCAL_LIKE, image)
                                 .argmax(-1), num_classes) for image, label in examples[:8]))


CASES = {
    # Sizes below and above the crop; scale 0.5 leaves some images smaller than it.
    'pad_ms_flip': dict(protocol=inference.Protocol(
        scales=(0.5, 1.0, 1.5), flip=True, mode='sliding', crop_size=(24, 24),
        window_layout='pad', align_corners=True),
        sizes=[(30, 41), (17, 23), (64, 50), (45, 64), (24, 24)], bucket=(64, 64)),
    # A fixed base size (PASCAL-Context's 520), a non-square crop, LIP's class swap.
    'pad_base_size_flip_pairs': dict(protocol=inference.Protocol(
        scales=(0.75, 1.25), flip=True, mode='sliding', crop_size=(20, 28),
        window_layout='pad', base_size=40, align_corners=False, flip_pairs=((1, 2),)),
        sizes=[(33, 40), (40, 21), (12, 30), (38, 38)], bucket=(40, 40)),
    # 'border' windows where every scaled image is at least the crop.
    'border_windows': dict(protocol=inference.Protocol(
        scales=(1.25, 1.5), flip=False, mode='sliding', crop_size=(20, 24),
        window_layout='border', stride_rate=2.0 / 3.0),
        sizes=[(33, 50), (40, 30), (20, 64)], bucket=(64, 64)),
}


@pytest.mark.parametrize('name', sorted(CASES))
def test_windows_equal_the_true_size_protocol(name):
  case = CASES[name]
  protocol, bucket, num_classes = case['protocol'], case['bucket'], 4
  model, variables = _model(num_classes)
  predictor = bucketed.BucketedPredictor(
      model, protocol=protocol, image_bucket=bucket, label_bucket=bucket,
      num_classes=num_classes, ignore_label=IGNORE, resize_output=False)
  device = jax.devices()[0]
  for image, label in _images(case['sizes'], num_classes):
    h, w = label.shape
    cm, pred, probs = predictor(image, label, device, variables)
    ref = _reference(model, variables, protocol, image)
    np.testing.assert_allclose(np.asarray(probs)[:h, :w], ref, rtol=2e-6, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(pred)[:h, :w], ref.argmax(-1))
    np.testing.assert_array_equal(cm, _confusion(label, ref.argmax(-1), num_classes))


def test_fixed_input_size_and_label_sized_output_are_exact():
  """LIP: every image resized to `resize_input`, so whole-image inference fills the
  bucket and is exact; probabilities go back to each label's own size."""
  protocol = inference.Protocol(scales=(0.75, 1.0), flip=True, mode='whole',
                                base_size=32, flip_pairs=((1, 2),))
  num_classes = 4
  model, variables = _model(num_classes)
  predictor = bucketed.BucketedPredictor(
      model, protocol=protocol, image_bucket=(32, 32), label_bucket=(48, 48),
      num_classes=num_classes, ignore_label=IGNORE, resize_output=True,
      bucket_setting='config.eval.resize_input')
  for (image, _), (_, label) in zip(_images([(32, 32)] * 3, num_classes),
                                    _images([(48, 30), (20, 41), (32, 32)], num_classes, 1)):
    cm, pred, probs = predictor(image, label, jax.devices()[0], variables)
    ref = _reference(model, variables, protocol, image, out_size=label.shape)
    h, w = label.shape
    np.testing.assert_allclose(np.asarray(probs)[:h, :w], ref, rtol=2e-6, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(pred)[:h, :w], ref.argmax(-1))
    np.testing.assert_array_equal(cm, _confusion(label, ref.argmax(-1), num_classes))


def test_whole_image_padded_to_the_bucket_differs_only_near_the_border():
  """The one departure: the network sees the image padded with black to the bucket,
  so its logits differ where its receptive field reaches the padding (right/bottom;
  with flip, the mirrored image's right border is the left one). Elsewhere the
  official sampling positions are kept, so the result is the true-size one."""
  protocol = inference.Protocol(scales=(0.75, 1.0), flip=True, mode='whole')
  num_classes = 4
  model, variables = _model(num_classes)
  bucket, margin = (64, 64), 16   # TinySeg's reach, in pixels of the smallest scale
  predictor = bucketed.BucketedPredictor(
      model, protocol=protocol, image_bucket=bucket, label_bucket=bucket,
      num_classes=num_classes, ignore_label=IGNORE, resize_output=False)
  differ = total = 0
  worst = 0.0
  for image, label in _images(_distinct_sizes(8, 36, 64, seed=4) + [bucket], num_classes):
    h, w = label.shape
    _, pred, probs = predictor(image, label, jax.devices()[0], variables)
    ref = _reference(model, variables, protocol, image)
    got = np.asarray(probs)[:h, :w]
    if (h, w) != bucket:
      np.testing.assert_allclose(got[:h - margin, margin:w - margin],
                                 ref[:h - margin, margin:w - margin], rtol=2e-6, atol=1e-6)
    else:   # fills the bucket: nothing padded, exact everywhere
      np.testing.assert_allclose(got, ref, rtol=2e-6, atol=1e-6)
    worst = max(worst, float((np.abs(got - ref) / ref).max()))
    differ += int((np.asarray(pred)[:h, :w] != ref.argmax(-1)).sum())
    total += h * w
  print(f'whole image padded to {bucket}: {differ} of {total} pixels '
        f'({100 * differ / total:.2f} %) change class, max |dp| / p = {worst:.3g}')
  assert differ / total < 0.002 and worst < 1.0


def test_an_image_larger_than_the_bucket_is_one_clear_error():
  model, variables = _model(3)
  predictor = bucketed.BucketedPredictor(
      model, protocol=PASCAL_LIKE, image_bucket=(32, 32), label_bucket=(32, 32),
      num_classes=3, ignore_label=IGNORE, resize_output=False)
  image, label = next(_images([(20, 40)], 3))
  with pytest.raises(ValueError, match=r'image is 20x40, larger than '
                                       r'config\.data\.eval_pad_size=\(32, 32\): raise'):
    predictor(image, label, jax.devices()[0], variables)


def test_largest_scaled_size_covers_every_image_of_the_bucket():
  for protocol in (inference.Protocol(base_size=None), inference.Protocol(base_size=50)):
    for scale in (0.5, 0.75, 1.25, 2.0):
      hh, ww = bucketed.largest_scaled_size(protocol, (23, 37), scale)
      sizes = [protocol.scaled_size(h, w, scale) for h in range(1, 24) for w in range(1, 38)]
      assert (hh, ww) == (max(s[0] for s in sizes), max(s[1] for s in sizes))

"""Every head of a small variant under jit: output shapes, train mode, odd sizes, bf16."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hrnet_jax
from model_helpers import random_variables

NAME = 'hrnet_w18_small_v1'   # C = 16: branch widths 16, 32, 64, 128
SHAPE = (2, 64, 96, 3)


@functools.lru_cache(maxsize=None)
def _model_and_variables(head, **kwargs):
  model = hrnet_jax.create_model(NAME, head=head, **kwargs)
  return model, random_variables(model, SHAPE)


def _images(shape=SHAPE, seed=1):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _shapes(tree):
  return jax.tree.map(lambda a: tuple(a.shape), tree)


EXPECTED = {
    'seg': (2, 16, 24, 19),
    'ocr': {'logits': (2, 16, 24, 19), 'aux_logits': (2, 16, 24, 19)},
    'cls': (2, 1000),
    'pose': (2, 16, 24, 17),
    'pyramid': tuple((2, 16 // 2 ** k, 24 // 2 ** k, 256) for k in range(5)),
    'features': ((2, 16, 24, 16), (2, 8, 12, 32), (2, 4, 6, 64), (2, 2, 3, 128)),
}


@pytest.mark.parametrize('head', sorted(EXPECTED))
def test_head_output_shapes_under_jit(head):
  model, variables = _model_and_variables(head)
  out = jax.jit(functools.partial(model.apply, train=False))(variables, _images())
  assert _shapes(out) == EXPECTED[head]
  assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(out))


@pytest.mark.parametrize('head', ['seg', 'ocr'])
def test_train_mode_updates_batch_stats_and_uses_dropout(head):
  model, variables = _model_and_variables(head)

  @jax.jit
  def train_forward(variables, images, key):
    return model.apply(variables, images, train=True, mutable=['batch_stats'],
                       rngs={'dropout': key})

  out, new_state = train_forward(variables, _images(), jax.random.key(0))
  assert _shapes(out) == EXPECTED[head]
  assert set(new_state) == {'batch_stats'}
  # Every BatchNorm's running statistics moved towards this batch.
  moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), variables['batch_stats'],
                       new_state['batch_stats'])
  assert all(jax.tree.leaves(moved))
  if head == 'ocr':
    # Dropout2d is active in train mode: another key gives other logits.
    out2, _ = train_forward(variables, _images(), jax.random.key(1))
    assert not np.allclose(out['logits'], out2['logits'])


def test_segmentation_on_odd_size_473():
  # 473 -> 237 -> 119 -> 60 -> 30 -> 15: bilinear fusion to the exact size handles it.
  model, variables = _model_and_variables('seg')
  out = jax.jit(model.apply)(variables, _images((1, 473, 473, 3)))
  assert out.shape == (1, 119, 119, 19)
  assert bool(jnp.all(jnp.isfinite(out)))


def test_bfloat16_compute_is_finite_and_close_to_float32():
  model32, variables = _model_and_variables('seg')
  model16 = hrnet_jax.create_model(NAME, head='seg', dtype=jnp.bfloat16)
  images = _images()
  out32 = jax.jit(model32.apply)(variables, images)
  out16 = jax.jit(model16.apply)(variables, images)
  assert out16.dtype == jnp.bfloat16
  out16 = np.asarray(out16, np.float32)
  assert np.all(np.isfinite(out16))
  rel = np.linalg.norm(out16 - out32) / np.linalg.norm(out32)
  assert rel < 0.05, rel
  # And the prediction itself mostly agrees.
  assert np.mean(out16.argmax(-1) == np.asarray(out32).argmax(-1)) > 0.9


@pytest.mark.slow
def test_remat_checkpoints_every_module_and_keeps_the_function():
  plain, variables = _model_and_variables('seg')
  remat = hrnet_jax.create_model(NAME, head='seg', remat=True)
  images = _images()

  def loss(model, params):
    out, _ = model.apply({'params': params, 'batch_stats': variables['batch_stats']}, images,
                         train=True, mutable=['batch_stats'])
    return jnp.mean(out ** 2)

  # One rematerialised region (a custom VJP that recomputes in the backward pass) per
  # multi-resolution module (small_v1 has 3); tests/test_remat.py measures the memory.
  # (BatchNorm's own custom VJP is in both.)
  count = lambda model: str(jax.make_jaxpr(functools.partial(loss, model))(
      variables['params'])).count('custom_vjp_call')
  assert count(remat) - count(plain) == 3
  np.testing.assert_allclose(jax.jit(functools.partial(loss, remat))(variables['params']),
                             jax.jit(functools.partial(loss, plain))(variables['params']),
                             rtol=1e-6)


def test_family_defaults_follow_the_official_code():
  seg = hrnet_jax.create_model('hrnet_w48', head='seg')
  ocr = hrnet_jax.create_model('hrnet_w48', head='ocr')
  cls = hrnet_jax.create_model('hrnet_w48', head='cls')
  assert (seg.opts.upsample, seg.opts.align_corners, seg.opts.bn_momentum) == (
      'bilinear', False, 0.01)
  assert (ocr.opts.upsample, ocr.opts.align_corners, ocr.opts.bn_momentum) == (
      'bilinear', True, 0.1)
  assert (cls.opts.upsample, cls.opts.bn_momentum) == ('nearest', 0.1)
  assert cls.num_classes == 1000 and seg.num_classes == 19
  custom = hrnet_jax.create_model('hrnet_w48', head='seg', align_corners=True, bn_momentum=0.1)
  assert (custom.opts.align_corners, custom.opts.bn_momentum) == (True, 0.1)


@pytest.mark.parametrize('kwargs, message', [
    (dict(name='hrnet_w99'), 'hrnet_w18_small_v1'),
    (dict(name='hrnet_w18', head='panoptic'), 'valid: .*seg.*ocr'),
    (dict(name='hrnet_w18', head='seg', num_classes=0), 'num_classes'),
    (dict(name='hrnet_w18', head='pyramid', num_classes=3), 'no classes'),
    (dict(name='hrnet_w18', head='seg', upsample='bicubic'), 'nearest'),
    (dict(name='hrnet_w18', head='seg', dtype='float99'), 'bfloat16'),
    (dict(name='hrnet_w18', head='seg', head_conv_bias=False), 'valid: none'),
])
def test_bad_arguments_raise_one_clear_error(kwargs, message):
  with pytest.raises(ValueError, match=message):
    hrnet_jax.create_model(**kwargs)


def test_bad_input_shapes_raise_clear_errors():
  model, variables = _model_and_variables('seg')
  with pytest.raises(ValueError, match='NHWC'):
    model.apply(variables, jnp.zeros((64, 64, 3)))
  with pytest.raises(ValueError, match='at least 32x32'):
    model.apply(variables, jnp.zeros((1, 16, 64, 3)))


def test_parameter_tree_splits_backbone_and_head():
  _, variables = _model_and_variables('seg')
  assert set(variables) == {'params', 'batch_stats'}
  assert set(variables['params']) == {'backbone', 'head'}
  assert {'conv1', 'bn1', 'layer1_0', 'transition1', 'stage2_0', 'stage4_0'} <= set(
      variables['params']['backbone'])

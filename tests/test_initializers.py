"""The bulk-sampled initialisation against model.init, torch's init formulas and numpy."""
import math

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hrnet_jax
from hrnet_jax.models import initializers

IMAGES = jnp.zeros((1, 64, 64, 3), jnp.float32)


def _flat(tree, to_numpy=True):
  return {'/'.join(k): np.asarray(v) if to_numpy else v for k, v in
          flax.traverse_util.flatten_dict(flax.core.unfreeze(tree)).items()}


@pytest.fixture(scope='module')
def cls_model_and_variables():
  model = hrnet_jax.create_model('hrnet_w18_small_v1', head='cls', num_classes=1000)
  init = jax.jit(lambda key: initializers.init_variables(model, key, IMAGES, train=False))
  return model, init, _flat(init(jax.random.key(0)))


def test_same_variables_as_model_init(cls_model_and_variables):
  model, _, ours = cls_model_and_variables
  theirs = _flat(jax.eval_shape(
      lambda: model.init({'params': jax.random.key(0)}, IMAGES, train=False)), to_numpy=False)
  assert sorted(ours) == sorted(theirs)
  for name, leaf in theirs.items():
    assert (ours[name].shape, ours[name].dtype) == (leaf.shape, leaf.dtype), name
  bn_scales = [v for k, v in ours.items() if k.endswith('/scale')]
  assert bn_scales and all((v == 1).all() for v in bn_scales)
  assert all((v == 0).all() for k, v in ours.items() if k.endswith('/mean'))
  assert all((v == 1).all() for k, v in ours.items() if k.endswith('/var'))


def test_kaiming_kernels_follow_torchs_formula(cls_model_and_variables):
  torch = pytest.importorskip('torch')
  _, _, ours = cls_model_and_variables
  kernels = {k: v for k, v in ours.items() if k.endswith('/kernel') and v.ndim == 4}
  assert len(kernels) > 50
  pooled = []
  for name, hwio in kernels.items():
    # torch's own fan_out and gain for kaiming_normal_(mode='fan_out', 'relu').
    oihw = torch.empty(hwio.shape[3], hwio.shape[2], hwio.shape[0], hwio.shape[1])
    fan_out = torch.nn.init._calculate_correct_fan(oihw, 'fan_out')
    std = torch.nn.init.calculate_gain('relu') / math.sqrt(fan_out)
    pooled.append(hwio.ravel() / std)
    if hwio.size >= 20000:    # tight enough per tensor
      assert abs(hwio.std() / std - 1) < 0.05, name
  unit = np.concatenate(pooled)
  assert abs(unit.mean()) < 0.01 and abs(unit.std() - 1) < 0.01
  # Untruncated, as torch's: 4.55 % of a normal lies beyond 2 sigma (0 if truncated there).
  assert abs(np.mean(np.abs(unit) > 2) - 0.0455) < 0.005
  # Every kernel is its own draw, not a repeat of a slice of another.
  firsts = [v.ravel()[:8].tobytes() for v in kernels.values()]
  assert len(set(firsts)) == len(firsts)


def test_uniform_layers_within_torchs_bounds(cls_model_and_variables):
  _, _, ours = cls_model_and_variables
  dense = [k for k, v in ours.items() if k.endswith('/kernel') and v.ndim == 2]
  assert dense
  for name in dense:
    kernel, bias = ours[name], ours[name[:-len('kernel')] + 'bias']
    bound = 1 / math.sqrt(kernel.shape[0])
    for v in (kernel, bias):
      assert np.abs(v).max() <= bound
    # U(-b, b): mean 0, variance b^2 / 3, reaches both ends.
    assert abs(kernel.mean()) < 0.01 * bound
    assert abs(kernel.var() / (bound ** 2 / 3) - 1) < 0.01
    assert kernel.min() < -0.99 * bound and kernel.max() > 0.99 * bound


def test_seed_determines_the_values(cls_model_and_variables):
  _, init, ours = cls_model_and_variables
  again = _flat(init(jax.random.key(0)))
  other = _flat(init(jax.random.key(1)))
  name = next(k for k, v in ours.items() if k.endswith('/kernel') and v.ndim == 4)
  assert all(np.array_equal(ours[k], again[k]) for k in ours)
  assert not np.array_equal(ours[name], other[name])


def test_normal_init_std_and_plain_flax_init():
  model = hrnet_jax.create_model('hrnet_w18_small_v1', head='seg', num_classes=5)
  bulk = _flat(jax.jit(lambda k: initializers.init_variables(
      model, k, IMAGES, train=False))(jax.random.key(3)))
  plain = _flat(model.init(jax.random.key(3), IMAGES, train=False))
  for variables in (bulk, plain):
    kernels = np.concatenate([v.ravel() for k, v in variables.items()
                              if k.endswith('/kernel')])
    assert abs(kernels.std() / 0.001 - 1) < 0.01
    assert abs(kernels.mean()) < 1e-5
  # The conv bias of the last layer: torch's default U(+-1/sqrt(fan_in)).
  biases = [k for k in bulk if k.endswith('/bias') and 'bn' not in k.lower()
            and k.replace('/bias', '/kernel') in bulk]
  for name in biases:
    kernel = bulk[name.replace('/bias', '/kernel')]
    assert np.abs(bulk[name]).max() <= 1 / math.sqrt(np.prod(kernel.shape[:-1]))


def test_one_hash_per_family_instead_of_one_per_parameter():
  """model.init's lowering holds a threefry hash per parameter; the bulk one a few."""
  model = hrnet_jax.create_model('hrnet_w18_small_v1', head='seg', num_classes=5)

  def hashes(fn):
    text = jax.jit(fn).lower(jax.random.key(0)).as_text()
    return text.count('call @_threefry') + text.count('call @threefry')

  plain = hashes(lambda k: model.init({'params': k}, IMAGES, train=False))
  bulk = hashes(lambda k: initializers.init_variables(model, k, IMAGES, train=False))
  assert plain > 100
  assert bulk <= 8 and plain > 20 * bulk


def test_pose_bias_starts_at_zero_and_seg_bias_at_torchs_default():
  """pose_hrnet's init_weights zeroes conv biases; seg_hrnet keeps torch's default."""
  for head, zero in (('pose', True), ('seg', False)):
    model = hrnet_jax.create_model('hrnet_w18_small_v1', head=head, num_classes=5)
    variables = _flat(jax.jit(lambda k, m=model: initializers.init_variables(
        m, k, IMAGES, train=False))(jax.random.key(0)))
    name = 'params/head/final_layer/bias' if head == 'pose' else 'params/head/classifier/bias'
    assert (variables[name] == 0).all() == zero, name

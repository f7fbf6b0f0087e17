"""Layers against PyTorch: resizing (both align_corners, up and down, nearest), BatchNorm
running statistics, convolution padding."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import hrnet_jax
from hrnet_jax.models import BatchNorm, Conv2d, ModelOptions, batch_norm


def _nchw(x):
  return torch.from_numpy(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))))


def _nhwc(t):
  return np.transpose(t.detach().numpy(), (0, 2, 3, 1))


@pytest.mark.parametrize('align_corners', [False, True])
@pytest.mark.parametrize('src, dst', [((15, 30), (60, 120)), ((7, 9), (29, 31)),
                                      ((97, 193), (25, 49)), ((5, 6), (1, 1)),
                                      ((64, 64), (64, 96))])
def test_bilinear_resize_equals_torch(src, dst, align_corners):
  x = np.random.default_rng(0).standard_normal((2, *src, 3)).astype(np.float32)
  ours = hrnet_jax.resize_bilinear(jnp.asarray(x), dst, align_corners=align_corners)
  ref = F.interpolate(_nchw(x), size=dst, mode='bilinear', align_corners=align_corners)
  np.testing.assert_allclose(ours, _nhwc(ref), atol=1e-5)


@pytest.mark.parametrize('src, dst', [((4, 6), (16, 24)), ((5, 7), (13, 20)),
                                      ((16, 16), (5, 9))])
def test_nearest_resize_equals_torch(src, dst):
  x = np.random.default_rng(0).standard_normal((1, *src, 2)).astype(np.float32)
  ours = hrnet_jax.resize_nearest(jnp.asarray(x), dst)
  ref = F.interpolate(_nchw(x), size=dst, mode='nearest')
  np.testing.assert_array_equal(ours, _nhwc(ref))


def test_resize_rejects_bad_shapes():
  with pytest.raises(ValueError, match='NHWC'):
    hrnet_jax.resize_bilinear(jnp.zeros((4, 4, 3)), (8, 8))
  with pytest.raises(ValueError, match='height, width'):
    hrnet_jax.resize_bilinear(jnp.zeros((1, 4, 4, 3)), (0, 8))


@pytest.mark.parametrize('momentum', [0.01, 0.1])
def test_batchnorm_train_step_moves_statistics_like_torch(momentum):
  rng = np.random.default_rng(0)
  x = (rng.standard_normal((3, 5, 7, 4)) * 2 + 1).astype(np.float32)
  gamma, beta = rng.uniform(0.5, 1.5, 4), rng.standard_normal(4)
  mean0, var0 = rng.standard_normal(4), rng.uniform(0.5, 1.5, 4)
  bn = BatchNorm(ModelOptions(bn_momentum=momentum))
  variables = {'params': {'scale': jnp.asarray(gamma, jnp.float32),
                          'bias': jnp.asarray(beta, jnp.float32)},
               'batch_stats': {'mean': jnp.asarray(mean0, jnp.float32),
                               'var': jnp.asarray(var0, jnp.float32)}}
  y, state = bn.apply(variables, jnp.asarray(x), True, mutable=['batch_stats'])

  ref = torch.nn.BatchNorm2d(4, eps=1e-5, momentum=momentum)
  with torch.no_grad():
    ref.weight.copy_(torch.tensor(gamma))
    ref.bias.copy_(torch.tensor(beta))
    ref.running_mean.copy_(torch.tensor(mean0))
    ref.running_var.copy_(torch.tensor(var0))
  ref.train()
  y_ref = ref(_nchw(x))
  np.testing.assert_allclose(y, _nhwc(y_ref), atol=1e-5)
  np.testing.assert_allclose(state['batch_stats']['mean'], ref.running_mean.numpy(), atol=1e-6)
  np.testing.assert_allclose(state['batch_stats']['var'], ref.running_var.numpy(), atol=1e-6)
  # Eval mode normalises with the running statistics, as torch's eval().
  ref.eval()
  y_eval = bn.apply({'params': variables['params'], 'batch_stats': state['batch_stats']},
                    jnp.asarray(x), False)
  np.testing.assert_allclose(y_eval, _nhwc(ref(_nchw(x))), atol=1e-5)


@pytest.mark.parametrize('shape', [(3, 5, 7, 4), (2, 16, 16, 8)])
def test_batchnorm_train_gradients_equal_torch_autograd(shape):
  """The hand-written backward (hrnet_jax/models/batch_norm.py) against torch's
  BatchNorm autograd in float64, for the input, scale and bias."""
  rng = np.random.default_rng(1)
  x = (rng.standard_normal(shape) * 3 + 2).astype(np.float32)
  g = rng.standard_normal(shape).astype(np.float32)
  c = shape[-1]
  gamma, beta = rng.uniform(0.5, 1.5, c).astype(np.float32), rng.standard_normal(c).astype(
      np.float32)
  bn = BatchNorm(ModelOptions())
  stats = {'mean': jnp.zeros(c), 'var': jnp.ones(c)}

  def f(x, scale, bias):
    y, _ = bn.apply({'params': {'scale': scale, 'bias': bias}, 'batch_stats': stats}, x,
                    True, mutable=['batch_stats'])
    return y

  def formula(x, scale, bias):  # jax's derivative of it: the other backends' backward
    mean, var = batch_norm.moments(x, jnp.float32)
    return batch_norm.affine(x, mean, var, scale, bias, 1e-5, jnp.float32, jnp.float32)

  y, vjp = jax.vjp(f, jnp.asarray(x), jnp.asarray(gamma), jnp.asarray(beta))
  dx, dscale, dbias = vjp(jnp.asarray(g))
  y2, vjp2 = jax.vjp(formula, jnp.asarray(x), jnp.asarray(gamma), jnp.asarray(beta))
  np.testing.assert_array_equal(y2, y)

  xt = torch.tensor(_nchw(x).numpy(), dtype=torch.float64, requires_grad=True)
  wt = torch.tensor(gamma, dtype=torch.float64, requires_grad=True)
  bt = torch.tensor(beta, dtype=torch.float64, requires_grad=True)
  yt = F.batch_norm(xt, None, None, wt, bt, training=True, eps=1e-5)
  yt.backward(torch.tensor(_nchw(g).numpy(), dtype=torch.float64))
  np.testing.assert_allclose(y, _nhwc(yt.detach()), rtol=1e-5, atol=1e-5)
  scale_dx = float(np.abs(xt.grad.numpy()).max())
  np.testing.assert_allclose(dx, _nhwc(xt.grad), rtol=1e-4, atol=1e-5 * scale_dx)
  np.testing.assert_allclose(dscale, wt.grad.numpy(), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(dbias, bt.grad.numpy(), rtol=1e-5, atol=1e-5)
  for ours, ref in zip(vjp2(jnp.asarray(g)), (_nhwc(xt.grad), wt.grad.numpy(),
                                               bt.grad.numpy())):
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5 * scale_dx)


def test_batchnorm_backward_keeps_no_more_activations_than_jax_derivative():
  """XLA schedules a backward term computed from residuals alone (x_hat) during the
  forward pass and holds it; the hand-written backward ties it to the cotangent
  (measured on this chain: 52 MiB untied against 38 MiB)."""
  def formula(x, s, b):
    mean, var = batch_norm.moments(x, jnp.float32)
    return batch_norm.affine(x, mean, var, s, b, 1e-5, jnp.float32, jnp.float32)

  def custom(x, s, b):
    return batch_norm.normalize_train(x, s, b, 1e-5, jnp.float32, jnp.float32)

  def loss(ws, x, bn):
    for w in ws:
      y = jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME',
                                       dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
      x = jax.nn.relu(bn(y, jnp.ones(32), jnp.zeros(32)))
    return jnp.sum(x ** 2)

  ws = [jnp.full((3, 3, 32, 32), 0.01)] * 8
  x = jnp.ones((1, 128, 128, 32))
  temp = {}
  for name, bn in (('formula', formula), ('custom', custom)):
    compiled = jax.jit(jax.grad(functools.partial(loss, bn=bn))).lower(ws, x).compile()
    temp[name] = compiled.memory_analysis().temp_size_in_bytes
  assert temp['custom'] <= 1.02 * temp['formula'], temp


def test_batchnorm_train_gradients_keep_dtypes_under_bf16():
  bn = BatchNorm(ModelOptions(dtype=jnp.bfloat16))
  x = jnp.asarray(np.random.default_rng(2).standard_normal((2, 4, 4, 3)), jnp.bfloat16)
  variables = bn.init(jax.random.key(0), x, True)

  def loss(params, x):
    y, _ = bn.apply({'params': params, 'batch_stats': variables['batch_stats']}, x, True,
                    mutable=['batch_stats'])
    assert y.dtype == jnp.bfloat16
    return jnp.sum(y.astype(jnp.float32) * jnp.arange(3.0))

  grads, dx = jax.grad(loss, argnums=(0, 1))(variables['params'], x)
  assert dx.dtype == jnp.bfloat16
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(grads))
  # d/d bias of sum(y * w) is w * N per channel, exactly.
  np.testing.assert_array_equal(grads['bias'], np.arange(3.0) * 32)


@pytest.mark.parametrize('size', [(8, 8), (7, 10)])
@pytest.mark.parametrize('kernel, stride', [(3, 2), (3, 1), (1, 1)])
def test_conv_pads_like_torch(size, kernel, stride):
  # XLA's 'SAME' pads a stride-2 conv on even inputs (0, 1); PyTorch pads (1, 1).
  rng = np.random.default_rng(0)
  x = rng.standard_normal((1, *size, 3)).astype(np.float32)
  conv = Conv2d(5, kernel, stride, use_bias=True)
  variables = conv.init(jax.random.key(0), jnp.asarray(x))
  ours = conv.apply(variables, jnp.asarray(x))
  weight = np.transpose(np.asarray(variables['params']['kernel']), (3, 2, 0, 1))
  ref = F.conv2d(_nchw(x), torch.from_numpy(weight),
                 torch.from_numpy(np.asarray(variables['params']['bias'])),
                 stride=stride, padding=kernel // 2)
  np.testing.assert_allclose(ours, _nhwc(ref), atol=1e-5)


@pytest.mark.parametrize('conv1x1', ['conv', 'dot'])
@pytest.mark.parametrize('size, stride', [((8, 8), 1), ((7, 10), 2), ((8, 6), 2)])
def test_conv1x1_formulations_match_torch_with_gradients(conv1x1, size, stride):
  """ModelOptions.conv1x1: the matmul and the convolution give torch's output and
  gradients (the parameters are the same; only how XLA computes them differs)."""
  rng = np.random.default_rng(1)
  x = rng.standard_normal((2, *size, 6)).astype(np.float32)
  conv = Conv2d(4, 1, stride, use_bias=True, opts=ModelOptions(conv1x1=conv1x1))
  variables = conv.init(jax.random.key(0), jnp.asarray(x))
  r = rng.standard_normal(conv.apply(variables, jnp.asarray(x)).shape).astype(np.float32)

  def loss(params, x):
    y = conv.apply({'params': params}, x)
    return jnp.sum(y * r), y
  (_, ours), (g, gx) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
      variables['params'], jnp.asarray(x))
  xt = _nchw(x).requires_grad_(True)
  wt = torch.from_numpy(np.transpose(np.asarray(variables['params']['kernel']),
                                     (3, 2, 0, 1))).requires_grad_(True)
  bt = torch.from_numpy(np.asarray(variables['params']['bias'])).requires_grad_(True)
  ref = F.conv2d(xt, wt, bt, stride=stride)
  (ref * _nchw(r)).sum().backward()
  np.testing.assert_allclose(ours, _nhwc(ref), atol=1e-5)
  np.testing.assert_allclose(gx, _nhwc(xt.grad), atol=1e-5)
  np.testing.assert_allclose(g['kernel'], np.transpose(wt.grad.numpy(), (2, 3, 1, 0)),
                             atol=1e-4)
  np.testing.assert_allclose(g['bias'], bt.grad.numpy(), atol=1e-4)


def test_conv1x1_rejects_unknown_formulation():
  with pytest.raises(ValueError, match='conv1x1 must be'):
    ModelOptions(conv1x1='fft')

"""Rematerialisation (`hrnet_jax.models.remat`): the same gradients, less memory.

Memory is XLA's own buffer assignment of the compiled gradient
(`memory_analysis().temp_size_in_bytes`), which is deterministic for a given program.
"""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

import hrnet_jax
from hrnet_jax.models.remat import recompute_in_backward, remat


def _block(w, x):
  for k in range(w.shape[0]):
    y = lax.conv_general_dilated(x, w[k], (1, 1), 'SAME',
                                 dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    x = jax.nn.relu(y + x)
  return x


def _chain_loss(ws, x, wrap):
  for w in ws:
    x = wrap(_block)(w, x)
  return jnp.sum(x ** 2)


def _chain_inputs():
  rng = np.random.default_rng(0)
  ws = [jnp.asarray(rng.standard_normal((4, 3, 3, 16, 16)) * 0.05, jnp.float32)
        for _ in range(6)]
  x = jnp.asarray(rng.standard_normal((1, 64, 64, 16)), jnp.float32)
  return ws, x


def _compiled_grad(wrap, ws, x):
  f = jax.jit(jax.grad(functools.partial(_chain_loss, wrap=wrap)))
  compiled = f.lower(ws, x).compile()
  return f, compiled


def test_recompute_in_backward_same_gradients_less_memory():
  ws, x = _chain_inputs()
  plain_f, plain_c = _compiled_grad(lambda f: f, ws, x)
  ours_f, ours_c = _compiled_grad(lambda f: recompute_in_backward(f, tie_argnums=(1,)), ws, x)
  for a, b in zip(plain_f(ws, x), ours_f(ws, x)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * float(jnp.max(jnp.abs(a))))
  # The forward convolutions run twice: 6 blocks x 4 convs recomputed.
  n_plain = plain_c.as_text().count('convolution(')
  assert ours_c.as_text().count('convolution(') >= n_plain + 24
  # Only the block inputs and one block's activations are kept: measured 84 MB against
  # 133 MB on an 8-block chain; here at least a quarter less.
  plain_temp = plain_c.memory_analysis().temp_size_in_bytes
  ours_temp = ours_c.memory_analysis().temp_size_in_bytes
  assert ours_temp < 0.75 * plain_temp, (ours_temp, plain_temp)


def test_tie_is_an_exact_no_op_and_only_nan_passes():
  fn = lambda w, x: jnp.sum(jnp.tanh(x * w), axis=-1)
  wrapped = recompute_in_backward(fn, tie_argnums=(1,))
  w = jnp.float32(0.7)
  x = jnp.asarray([[-0.0, 1.5, -2.0], [3.0, 1e-40, -1e30]], jnp.float32)
  for g in (jnp.ones(2), jnp.asarray([-jnp.inf, 1.0]), jnp.asarray([0.0, 2.0])):
    expected = jax.vjp(fn, w, x)[1](g)
    got = jax.vjp(wrapped, w, x)[1](g)
    for e, o in zip(expected, got):
      np.testing.assert_array_equal(np.asarray(o), np.asarray(e))
  got = jax.vjp(wrapped, w, x)[1](jnp.asarray([jnp.nan, 1.0]))
  assert np.isnan(np.asarray(got[1])).all()


class _Stack(nn.Module):
  """Three BN blocks, the middle ones rematerialised; `train` is static."""
  use_remat: bool

  @nn.compact
  def __call__(self, x, train):
    cls = remat(_BNBlock, static_argnums=(2,)) if self.use_remat else _BNBlock
    for i in range(3):
      x = cls(name=f'block{i}')(x, train)
    return x


class _BNBlock(nn.Module):
  @nn.compact
  def __call__(self, x, train):
    y = nn.Conv(x.shape[-1], (3, 3), use_bias=False)(x)
    y = nn.BatchNorm(use_running_average=not train, momentum=0.9)(y)
    return nn.relu(y + x)


def test_flax_remat_keeps_parameter_names_statistics_and_gradients():
  x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 16, 16, 8)), jnp.float32)
  plain, ours = _Stack(use_remat=False), _Stack(use_remat=True)
  variables = plain.init(jax.random.key(0), x, False)
  assert jax.tree.structure(ours.init(jax.random.key(0), x, False)) == jax.tree.structure(
      variables)

  def loss(model, params):
    y, updates = model.apply({'params': params, 'batch_stats': variables['batch_stats']},
                             x, True, mutable=['batch_stats'])
    return jnp.mean(y ** 2), updates

  (l0, s0), g0 = jax.jit(jax.value_and_grad(functools.partial(loss, plain), has_aux=True))(
      variables['params'])
  (l1, s1), g1 = jax.jit(jax.value_and_grad(functools.partial(loss, ours), has_aux=True))(
      variables['params'])
  np.testing.assert_allclose(l1, l0, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), g1, g0)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), s1, s0)
  # Evaluation mode (no gradient) runs the plain function.
  np.testing.assert_array_equal(ours.apply(variables, x, False), plain.apply(variables, x, False))


def test_hrnet_remat_cuts_the_compiled_memory():
  """hrnet_w18_small_v1 seg, 2x128x256: measured 59.9 -> 43.0 MiB of temporaries."""
  images = jnp.asarray(np.random.default_rng(2).standard_normal((2, 128, 256, 3)), jnp.float32)
  temps, grads = {}, {}
  for use_remat in (False, True):
    model = hrnet_jax.create_model('hrnet_w18_small_v1', head='seg', remat=use_remat)
    variables = jax.jit(functools.partial(model.init, train=False))(jax.random.key(0), images)

    def loss(params, model=model, variables=variables):
      out, _ = model.apply({'params': params, 'batch_stats': variables['batch_stats']},
                           images, train=True, mutable=['batch_stats'])
      return jnp.mean(out ** 2)

    f = jax.jit(jax.grad(loss))
    temps[use_remat] = f.lower(variables['params']).compile().memory_analysis().temp_size_in_bytes
    grads[use_remat] = f(variables['params'])
  assert temps[True] < 0.85 * temps[False], temps
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               grads[True], grads[False])

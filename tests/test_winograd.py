"""Winograd 3x3 convolution against XLA's direct convolution and against PyTorch: output,
input gradient and weight gradient, on even and odd sizes, computed in float64 as the
reference so the tolerance measures Winograd's own float32 error."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hrnet_jax.models import winograd


def _direct(x, w):
  return jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _reference(x, w, r):
  """PyTorch float64 output and gradients of sum(conv(x, w) * r) (an independent
  implementation of the padding-1 correlation)."""
  xt = torch.tensor(np.transpose(x, (0, 3, 1, 2)), dtype=torch.float64, requires_grad=True)
  wt = torch.tensor(np.transpose(w, (3, 2, 0, 1)), dtype=torch.float64, requires_grad=True)
  y = F.conv2d(xt, wt, padding=1)
  (y * torch.tensor(np.transpose(r, (0, 3, 1, 2)), dtype=torch.float64)).sum().backward()
  return (np.transpose(y.detach().numpy(), (0, 2, 3, 1)),
          np.transpose(xt.grad.numpy(), (0, 2, 3, 1)),
          np.transpose(wt.grad.numpy(), (2, 3, 1, 0)))


def _rel(a, b):
  return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))


def _case(shape, cout, seed=0):
  rng = np.random.default_rng(seed)
  n, h, w, c = shape
  x = rng.standard_normal(shape).astype(np.float32)
  k = (rng.standard_normal((3, 3, c, cout)) / np.sqrt(9 * c)).astype(np.float32)
  r = rng.standard_normal((n, h, w, cout)).astype(np.float32)
  return x, k, r


def _value_and_grads(conv, x, k, r):
  def loss(x, k):
    y = conv(x, k)
    return jnp.sum(y * r), y
  (_, y), (dx, dk) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(x, k)
  return y, dx, dk


# Tolerances: float32 Winograd against a float64 reference. The direct float32
# convolution itself lands around 1e-7..1e-6 here.
TOLERANCE = {2: 3e-6, 4: 3e-5}


@pytest.mark.parametrize('tile', winograd.TILE_SIZES)
@pytest.mark.parametrize('shape, cout', [((2, 8, 12, 5), 7), ((1, 7, 9, 3), 4),
                                         ((3, 1, 1, 2), 3), ((1, 16, 32, 48), 48)])
def test_output_and_gradients_match_float64_reference(tile, shape, cout):
  x, k, r = _case(shape, cout)
  y_ref, dx_ref, dk_ref = _reference(x, k, r)
  y, dx, dk = _value_and_grads(lambda a, b: winograd.conv3x3(a, b, tile), x, k, r)
  tol = TOLERANCE[tile]
  assert y.shape == y_ref.shape and dx.shape == x.shape and dk.shape == k.shape
  assert _rel(y, y_ref) < tol, ('output', _rel(y, y_ref))
  assert _rel(dx, dx_ref) < tol, ('input gradient', _rel(dx, dx_ref))
  assert _rel(dk, dk_ref) < tol, ('weight gradient', _rel(dk, dk_ref))


@pytest.mark.parametrize('tile', winograd.TILE_SIZES)
def test_wgrad_variant_matches_float64_reference(tile):
  """conv3x3_wgrad: XLA forward and input gradient, Winograd weight gradient."""
  x, k, r = _case((2, 9, 14, 6), 5, seed=4)
  y_ref, dx_ref, dk_ref = _reference(x, k, r)
  y, dx, dk = _value_and_grads(lambda a, b: winograd.conv3x3_wgrad(a, b, tile), x, k, r)
  assert _rel(y, y_ref) < 3e-6 and _rel(dx, dx_ref) < 3e-6
  assert _rel(dk, dk_ref) < TOLERANCE[tile], _rel(dk, dk_ref)


@pytest.mark.parametrize('tile', winograd.TILE_SIZES)
def test_matches_xla_direct_convolution(tile):
  x, k, r = _case((2, 15, 22, 24), 32, seed=1)
  y, dx, dk = _value_and_grads(lambda a, b: winograd.conv3x3(a, b, tile), x, k, r)
  y_d, dx_d, dk_d = _value_and_grads(_direct, x, k, r)
  tol = 10 * TOLERANCE[tile]   # both sides float32
  for ours, theirs in ((y, y_d), (dx, dx_d), (dk, dk_d)):
    assert _rel(ours, np.asarray(theirs, np.float64)) < tol


def test_vmap_composes():
  """vmap over the custom-VJP function batches like the direct convolution."""
  x, k, r = _case((2, 6, 6, 3), 4, seed=2)
  ys = jax.vmap(lambda xi: winograd.conv3x3(xi[None], k)[0])(x)
  np.testing.assert_allclose(ys, _direct(x, k), rtol=1e-5, atol=1e-5)


def test_bad_arguments_fail_with_one_line():
  x = jnp.zeros((1, 4, 4, 3))
  with pytest.raises(ValueError, match='tile must be one of'):
    winograd.conv3x3(x, jnp.zeros((3, 3, 3, 2)), tile=3)
  with pytest.raises(ValueError, match='kernel'):
    winograd.conv3x3(x, jnp.zeros((1, 1, 3, 2)))


"""Winograd convolution F(m x m, 3 x 3) for stride-1 3x3 convolutions with padding 1 (NHWC).

Why: a direct 3x3 convolution costs 9 multiply-adds per input channel and output pixel;
Winograd's minimal filtering computes an m x m output tile from an (m+2) x (m+2) input
tile with (m+2)^2 elementwise products per channel pair, i.e. 2.25x fewer (m = 2) or
4x fewer (m = 4) multiplies, moved into one batched matmul per tile position:

    Y = A^T [ (G g G^T) (.) (B^T d B) ] A      (Lavin & Gray 2016, "Fast Algorithms
                                                 for Convolutional Neural Networks")

Everything is `jnp`: the transforms are strided slices and signed sums that XLA fuses
into one loop each; the products are one `dot_general` with the (m+2)^2 tile positions
as the batch dimension. The backward pass is Winograd as well (custom VJP):
  * input gradient: the padding-1 correlation's adjoint is the same correlation of the
    output gradient with the kernel flipped in space and transposed in channels, so it
    is another Winograd convolution;
  * weight gradient: the adjoint of the Winograd formula itself, G^T [ sum over tiles of
    (B^T d B) (.) (A dY A^T) ] G, one batched matmul contracting over the tiles.
The algorithm is exact in exact arithmetic; in float32 F(2x2) stays within ~1e-6
relative of the direct convolution, F(4x4) within ~1e-5 (its transforms hold 1/6, 1/24
and powers of 2 up to 8, which cost precision). Use it for float32; bfloat16's 8-bit
mantissa loses too much in the transforms.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

# Transform matrices (B^T, G, A^T) of F(m x m, 3 x 3).
_MATRICES = {
    2: (np.array([[1, 0, -1, 0],
                  [0, 1, 1, 0],
                  [0, -1, 1, 0],
                  [0, 1, 0, -1]], np.float64),
        np.array([[1, 0, 0],
                  [.5, .5, .5],
                  [.5, -.5, .5],
                  [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 0],
                  [0, 1, -1, -1]], np.float64)),
    4: (np.array([[4, 0, -5, 0, 1, 0],
                  [0, -4, -4, 1, 1, 0],
                  [0, 4, -4, -1, 1, 0],
                  [0, -2, -1, 2, 1, 0],
                  [0, 2, -1, -2, 1, 0],
                  [0, 4, 0, -5, 0, 1]], np.float64),
        np.array([[1 / 4, 0, 0],
                  [-1 / 6, -1 / 6, -1 / 6],
                  [-1 / 6, 1 / 6, -1 / 6],
                  [1 / 24, 1 / 12, 1 / 6],
                  [1 / 24, -1 / 12, 1 / 6],
                  [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 1, 1, 0],
                  [0, 1, -1, 2, -2, 0],
                  [0, 1, 1, 4, 4, 0],
                  [0, 1, -1, 8, -8, 1]], np.float64)),
}
TILE_SIZES = tuple(_MATRICES)


def _combine(parts, coeffs):
  """sum_i coeffs[i] * parts[i], skipping zeros and multiplying only where |c| != 1."""
  total = None
  for p, c in zip(parts, coeffs):
    if c == 0:
      continue
    if c == 1:
      term, sign = p, 1
    elif c == -1:
      term, sign = p, -1
    else:
      term, sign = p * jnp.asarray(c, p.dtype), 1
    if total is None:
      total = term if sign == 1 else -term
    else:
      total = total + term if sign == 1 else total - term
  return total if total is not None else jnp.zeros_like(parts[0])


def _num_tiles(h: int, w: int, m: int):
  return -(-h // m), -(-w // m)


def _input_transform(x, m: int):
  """(N, H, W, C) -> (alpha^2, N*th*tw, C): B^T d B of every padded input tile."""
  bt = _MATRICES[m][0]
  alpha = m + 2
  n, h, w, c = x.shape
  th, tw = _num_tiles(h, w, m)
  # Padding 1 on top/left (the convolution's own) and enough zeros bottom/right for the
  # last tile: the padded extent is m * tiles + 2.
  xp = jnp.pad(x, ((0, 0), (1, m * th + 1 - h), (1, m * tw + 1 - w), (0, 0)))
  rows = [jax.lax.slice_in_dim(xp, i, i + m * (th - 1) + 1, m, axis=1) for i in range(alpha)]
  out = []
  for a in range(alpha):
    u = _combine(rows, bt[a])
    cols = [jax.lax.slice_in_dim(u, j, j + m * (tw - 1) + 1, m, axis=2) for j in range(alpha)]
    out += [_combine(cols, bt[b]) for b in range(alpha)]
  return jnp.stack(out).reshape(alpha * alpha, n * th * tw, c)


def _filter_transform(w, m: int):
  """(3, 3, C, K) -> (alpha^2, C, K): G g G^T, as signed sums XLA fuses (an einsum with
  3-long contractions compiles to a slow dot on the CPU)."""
  g = _MATRICES[m][1]
  rows = [w[i] for i in range(3)]                      # (3, C, K) each
  out = []
  for a in range(m + 2):
    s = _combine(rows, g[a])
    cols = [s[j] for j in range(3)]
    out += [_combine(cols, g[b]) for b in range(m + 2)]
  return jnp.stack(out)

def _output_transform(prod, shape, m: int):
  """(alpha^2, N*th*tw, K) -> (N, H, W, K): A^T M A of every tile, tiles stitched."""
  at = _MATRICES[m][2]
  alpha = m + 2
  n, h, w, k = shape
  th, tw = _num_tiles(h, w, m)
  prod = prod.reshape(alpha, alpha, n, th, tw, k)
  rows = [prod[a] for a in range(alpha)]
  out = []
  for i in range(m):
    s = _combine(rows, at[i])          # (alpha, N, th, tw, K)
    cols = [s[b] for b in range(alpha)]
    out.append(jnp.stack([_combine(cols, at[j]) for j in range(m)]))
  y = jnp.stack(out)                                   # (m, m, N, th, tw, K)
  y = y.transpose(2, 3, 0, 4, 1, 5).reshape(n, th * m, tw * m, k)
  return y[:, :h, :w]


def _output_adjoint(dy, m: int):
  """(N, H, W, K) -> (alpha^2, N*th*tw, K): A dY A^T of every (zero-padded) output tile."""
  at = _MATRICES[m][2]
  alpha = m + 2
  n, h, w, k = dy.shape
  th, tw = _num_tiles(h, w, m)
  dy = jnp.pad(dy, ((0, 0), (0, m * th - h), (0, m * tw - w), (0, 0)))
  tiles = dy.reshape(n, th, m, tw, m, k)
  rows = [tiles[:, :, i] for i in range(m)]           # (N, th, tw, m, K)
  out = []
  for a in range(alpha):
    s = _combine(rows, at[:, a])
    cols = [s[:, :, :, j] for j in range(m)]
    out += [_combine(cols, at[:, b]) for b in range(alpha)]
  return jnp.stack(out).reshape(alpha * alpha, n * th * tw, k)


def _forward(x, w, m: int):
  v = _input_transform(x, m)
  u = _filter_transform(w, m)
  prod = jax.lax.dot_general(v, u, (((2,), (1,)), ((0,), (0,))))   # (alpha^2, P, K)
  return _output_transform(prod, x.shape[:3] + (w.shape[3],), m)


def _weight_grad(x, dy, m: int):
  """G^T [ sum over tiles (B^T d B) (.) (A dY A^T) ] G, as (3, 3, C, K)."""
  v = _input_transform(x, m)                       # (alpha^2, P, C)
  dm = _output_adjoint(dy, m)                      # (alpha^2, P, K)
  du = jax.lax.dot_general(v, dm, (((1,), (1,)), ((0,), (0,))))    # (alpha^2, C, K)
  alpha = m + 2
  du = du.reshape(alpha, alpha, du.shape[1], du.shape[2])
  g = _MATRICES[m][1]
  rows = [du[a] for a in range(alpha)]                 # (alpha, C, K) each
  out = []
  for i in range(3):
    s = _combine(rows, g[:, i])
    cols = [s[b] for b in range(alpha)]
    out.append(jnp.stack([_combine(cols, g[:, j]) for j in range(3)]))
  return jnp.stack(out)


def _flip_transpose(w):
  """Kernel of the input gradient: flipped in space, input/output channels swapped."""
  return jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv(x, w, m):
  return _forward(x, w, m)


def _conv_fwd(x, w, m):
  return _forward(x, w, m), (x, w)


def _conv_bwd(m, residuals, dy):
  x, w = residuals
  dx = _forward(dy, _flip_transpose(w), m)
  dw = _weight_grad(x, dy, m)
  return dx.astype(x.dtype), dw.astype(w.dtype)


_conv.defvjp(_conv_fwd, _conv_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_wgrad(x, w, m):
  return _direct(x, w)


def _direct(x, w):
  return jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _conv_wgrad_fwd(x, w, m):
  return _direct(x, w), (x, w)


def _conv_wgrad_bwd(m, residuals, dy):
  x, w = residuals
  # The input gradient written as a forward convolution (XLA's fast path for it), the
  # weight gradient by Winograd (XLA:CPU's own is its slowest convolution).
  dx = _direct(dy, _flip_transpose(w))
  return dx.astype(x.dtype), _weight_grad(x, dy, m).astype(w.dtype)


_conv_wgrad.defvjp(_conv_wgrad_fwd, _conv_wgrad_bwd)


def _check(x, w, tile):
  if tile not in _MATRICES:
    raise ValueError(f'winograd tile must be one of {TILE_SIZES}, got {tile}')
  if x.ndim != 4 or w.shape[:2] != (3, 3) or w.shape[2] != x.shape[3]:
    raise ValueError(f'winograd.conv3x3 needs NHWC x and a (3, 3, C, K) kernel with C = '
                     f'x.shape[3]; got x {x.shape}, w {w.shape}')


def conv3x3_wgrad(x: jax.Array, w: jax.Array, tile: int = 2) -> jax.Array:
  """XLA's stride-1 3x3 convolution (padding 1) whose weight gradient is Winograd.

  The forward and the input gradient stay XLA convolutions (fast, and a small program);
  only the weight gradient, the slow one on XLA:CPU, runs as `conv3x3`'s does.
  """
  _check(x, w, tile)
  return _conv_wgrad(x, w, tile)


def conv3x3(x: jax.Array, w: jax.Array, tile: int = 2) -> jax.Array:
  """Stride-1 3x3 convolution with padding 1 of NHWC `x` and HWIO `w` by Winograd.

  Same result as `lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))` up to float rounding; differentiable
  (both gradients by Winograd too). `tile` is m of F(m x m, 3 x 3): 2 or 4.
  """
  _check(x, w, tile)
  return _conv(x, w, tile)

"""PyTorch-exact resizing for NHWC tensors.

`jax.image.resize` antialiases when it shrinks and has no align_corners=True mode; the
official HRNet code uses `F.interpolate` (bilinear, align_corners False or True, nearest)
and cv2's INTER_LINEAR, none of which antialias. Parity with them needs these.

Bilinear resizing is written as two small interpolation matrices applied with einsum:
exact, static in shape, and matmul-friendly on TPU.
"""
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def _source_coords(in_size: int, out_size: int, align_corners: bool,
                   wide: bool = False) -> np.ndarray:
  """Source coordinate of every output pixel, as PyTorch computes it for `size=`.

  In float32 like PyTorch's kernels for float32 tensors, whose compiled
  `scale * (dst + 0.5) - 0.5` is a fused multiply-add (one rounding); float64
  coordinates differ from theirs by up to ~1e-5 on large maps. `wide`: float64, as
  PyTorch computes them for float64 tensors.
  """
  if wide:
    dst = np.arange(out_size, dtype=np.float64)
    if align_corners:
      return dst * ((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0)
    return np.maximum((in_size / out_size) * (dst + 0.5) - 0.5, 0.0)
  f32 = np.float32
  dst = np.arange(out_size, dtype=f32)
  if align_corners:
    scale = f32(in_size - 1) / f32(out_size - 1) if out_size > 1 else f32(0)
    return dst * scale
  scale = f32(in_size) / f32(out_size)
  # Half-pixel centres; PyTorch clamps negative source coordinates to 0.
  fused = np.float64(scale) * (dst + f32(0.5)).astype(np.float64) - 0.5
  return np.maximum(fused.astype(f32), f32(0))


def linear_weights(in_size: int, out_size: int, align_corners: bool,
                   dtype=np.float32) -> np.ndarray:
  """(out_size, in_size) matrix M so that M @ signal is the 1-D linear resize."""
  wide = np.dtype(dtype) == np.float64
  src = _source_coords(in_size, out_size, align_corners, wide)
  lo = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
  hi = np.minimum(lo + 1, in_size - 1)
  frac = (src - lo.astype(src.dtype)).astype(np.float64)
  weights = np.zeros((out_size, in_size), np.float64)
  rows = np.arange(out_size)
  np.add.at(weights, (rows, lo), 1.0 - frac)
  np.add.at(weights, (rows, hi), frac)
  return weights.astype(np.float64 if wide else np.float32)


def _check(x: jax.Array, size: Sequence[int]) -> tuple:
  if x.ndim != 4:
    raise ValueError(f'resize expects an NHWC array, got shape {tuple(x.shape)}')
  if len(size) != 2 or min(size) < 1:
    raise ValueError(f'resize size must be (height, width) >= 1, got {tuple(size)}')
  return int(size[0]), int(size[1])


def resize_bilinear(x: jax.Array, size: Sequence[int], *,
                    align_corners: bool = False) -> jax.Array:
  """Bilinear resize of NHWC `x` to `size`, equal to torch's F.interpolate(mode='bilinear').

  With align_corners=False this is also cv2.resize(..., INTER_LINEAR) on float input.
  """
  out_h, out_w = _check(x, size)
  in_h, in_w = x.shape[1], x.shape[2]
  if (in_h, in_w) == (out_h, out_w):
    return x
  compute = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
  # Full precision for fp32 inputs: on TPU the default matmul precision is bf16.
  precision = (jax.lax.Precision.HIGHEST if compute in (jnp.float32, jnp.float64)
               else None)
  y = x.astype(compute)
  if in_h != out_h:
    wh = jnp.asarray(linear_weights(in_h, out_h, align_corners, compute), compute)
    y = jnp.einsum('oh,nhwc->nowc', wh, y, precision=precision)
  if in_w != out_w:
    ww = jnp.asarray(linear_weights(in_w, out_w, align_corners, compute), compute)
    y = jnp.einsum('ow,nhwc->nhoc', ww, y, precision=precision)
  return y


def resize_nearest(x: jax.Array, size: Sequence[int]) -> jax.Array:
  """Nearest resize equal to torch's F.interpolate(mode='nearest') (floor of dst * scale)."""
  out_h, out_w = _check(x, size)
  in_h, in_w = x.shape[1], x.shape[2]
  if out_h % in_h == 0 and out_w % in_w == 0:
    # Integer factors (every HRNet fusion on sizes divisible by 32): a cheap repeat.
    return jnp.repeat(jnp.repeat(x, out_h // in_h, axis=1), out_w // in_w, axis=2)
  rows = np.minimum(np.floor(np.arange(out_h) * (in_h / out_h)).astype(np.int64), in_h - 1)
  cols = np.minimum(np.floor(np.arange(out_w) * (in_w / out_w)).astype(np.int64), in_w - 1)
  return jnp.take(jnp.take(x, jnp.asarray(rows), axis=1), jnp.asarray(cols), axis=2)

"""The official segmentation test protocol, jit-compiled and sharded over devices.

What the official code (`BaseDataset.inference` / `multi_scale_inference` and the
Cityscapes override, `pytorch-v1.1` and `HRNet-OCR` branches) does for one image:

  for every scale s:
    resize the *normalised* image (cv2 INTER_LINEAR: half-pixel bilinear, no
    antialias) so its long side is int(base_size * s + 0.5);
    cut it into windows (below), and for every window:
      logits -> bilinear upsample to the window size (align_corners of the family);
      with flip: the same for the mirrored window, mirrored back (LIP: left/right
      channels swapped first), and the two logits averaged;
      exp() of that (not softmax);
    add the window outputs up and divide by how many windows cover each pixel;
    bilinear upsample to the original size;
  sum over scales; argmax.

Windows (`window_layout`):
  * 'border' (Cityscapes code): scales <= 1 run on the whole image; larger ones in
    windows with stride = int(crop * stride_rate), the last window shifted back so
    that it ends at the image border (an image smaller than the crop is one window of
    its own size).
  * 'pad' (the base code, for PASCAL-Context, LIP, ADE20K): the image is padded
    (bottom/right, black) to at least the crop; windows start on the stride grid and
    the last ones are padded with black to the full crop.
`mode='whole'` runs every scale as one window, which is what 'border' does anyway
whenever the crop covers the image.

Shapes are static per (input size, scale), so each scale compiles once; windows run
through one `lax.map`, so the model is compiled once per scale, not per window.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hrnet_jax.data import registry
from hrnet_jax.data.errors import DataError
from hrnet_jax.data.normalization import normalize  # the one table of mean / std
from hrnet_jax.models.resize import resize_bilinear

LogitsFn = Callable[[Any, jax.Array], jax.Array]


def dataset_flip_pairs(name: str) -> tuple[tuple[int, int], ...]:
  """Classes a horizontal flip swaps (LIP's left/right parts, official `lip.py`)."""
  try:
    return tuple(registry.get_dataset_info(name).flip_pairs)
  except DataError:   # not in the registry: nothing to swap
    return ()


def resolve_align_corners(model, config=None) -> bool:
  """align_corners of the model (its resolved options), else the config's, else by head."""
  value = getattr(getattr(model, 'opts', None), 'align_corners', None)
  if value is None:
    value = getattr(model, 'align_corners', None)
  if value is None and config is not None:
    value = config.model.get('align_corners', None)
  if value is None:
    # Family defaults of the official code: HRNet-OCR branch True, pytorch-v1.1 False.
    head = getattr(model, 'head', None) or (config.model.head if config is not None else '')
    value = head == 'ocr'
  return bool(value)


@dataclasses.dataclass(frozen=True)
class Protocol:
  """Test-time settings; `from_config` reads them from `config.eval` / `config.data`."""
  scales: tuple[float, ...] = (1.0,)
  flip: bool = False
  mode: str = 'whole'                       # 'whole' | 'sliding'
  crop_size: tuple[int, int] = (1024, 2048)  # (H, W) of a sliding window
  stride_rate: float = 2.0 / 3.0
  window_layout: str = 'border'             # 'border' | 'pad'
  base_size: int | None = None              # long side at scale 1; None = the image's
  align_corners: bool = False
  flip_pairs: tuple[tuple[int, int], ...] = ()

  def __post_init__(self):
    if self.mode not in ('whole', 'sliding'):
      raise ValueError(f"eval.mode must be 'whole' or 'sliding', got {self.mode!r}.")
    if self.window_layout not in ('border', 'pad'):
      raise ValueError("eval.window_layout must be 'border' or 'pad', got "
                       f'{self.window_layout!r}.')
    if not self.scales or min(self.scales) <= 0:
      raise ValueError(f'eval.scales must be positive, got {self.scales}.')

  @classmethod
  def from_config(cls, config, *, align_corners: bool,
                  flip_pairs: Sequence[tuple[int, int]] | None = None) -> 'Protocol':
    ev = config.eval
    if flip_pairs is None:
      flip_pairs = dataset_flip_pairs(config.data.name)
    return cls(scales=tuple(float(s) for s in ev.scales), flip=bool(ev.flip),
               mode=ev.mode, crop_size=tuple(int(c) for c in ev.crop_size),
               stride_rate=float(ev.stride_rate),
               window_layout=ev.get('window_layout', 'border'),
               base_size=config.data.get('base_size', None),
               align_corners=bool(align_corners), flip_pairs=tuple(flip_pairs))

  def scaled_size(self, height: int, width: int, scale: float) -> tuple[int, int]:
    """The official multi_scale_aug size: long side int(base * s + 0.5), ratio kept."""
    base = self.base_size or max(height, width)
    long_size = int(base * scale + 0.5)
    if height > width:
      return long_size, int(width * long_size / height + 0.5)
    return int(height * long_size / width + 0.5), long_size


def _axis_windows(size: int, crop: int, stride: int, layout: str) -> tuple[int, list[int], int]:
  """(padded size, window starts, window length) along one axis."""
  if layout == 'border':
    n = max(math.ceil((size - crop) / stride), 0) + 1
    starts = []
    for i in range(n):
      end = min(i * stride + crop, size)
      starts.append(max(end - crop, 0))
    return size, starts, min(crop, size)
  padded = max(size, crop)
  n = max(math.ceil((padded - crop) / stride), 0) + 1
  return padded, [i * stride for i in range(n)], crop


def window_grid(height: int, width: int, protocol: Protocol):
  """Padded size and the (h0, w0) of every window for an image of this size."""
  if protocol.mode == 'whole':
    return (height, width), [(0, 0)], (height, width)
  ch, cw = protocol.crop_size
  sh = int(ch * protocol.stride_rate)
  sw = int(cw * protocol.stride_rate)
  if sh < 1 or sw < 1:
    raise ValueError(f'sliding stride {sh}x{sw} from crop {protocol.crop_size} and '
                     f'stride_rate {protocol.stride_rate} must be >= 1.')
  ph, rows, wh = _axis_windows(height, ch, sh, protocol.window_layout)
  pw, cols, ww = _axis_windows(width, cw, sw, protocol.window_layout)
  return (ph, pw), [(r, c) for r in rows for c in cols], (wh, ww)


def _flip_permutation(num_classes: int, pairs) -> np.ndarray:
  perm = np.arange(num_classes)
  for a, b in pairs:
    if max(a, b) >= num_classes:
      raise ValueError(f'flip pair ({a}, {b}) is out of range for {num_classes} classes.')
    perm[a], perm[b] = b, a
  return perm


def _window_probs(logits_fn: LogitsFn, variables, x: jax.Array, protocol: Protocol) -> jax.Array:
  """exp of (flip-averaged) logits upsampled to the window size. x: (N, h, w, 3)."""
  n, h, w, _ = x.shape
  batch = jnp.concatenate([x, x[:, :, ::-1]], axis=0) if protocol.flip else x
  logits = logits_fn(variables, batch)
  logits = resize_bilinear(logits.astype(jnp.float32), (h, w),
                           align_corners=protocol.align_corners)
  if protocol.flip:
    flipped = logits[n:]
    if protocol.flip_pairs:
      flipped = flipped[..., _flip_permutation(flipped.shape[-1], protocol.flip_pairs)]
    logits = (logits[:n] + flipped[:, :, ::-1]) * 0.5
  return jnp.exp(logits)


def _scale_probs(logits_fn, variables, image: jax.Array, protocol: Protocol) -> jax.Array:
  """Window-averaged probabilities of one scale at the scaled size (N, h, w, C)."""
  n, h, w, c = image.shape
  (ph, pw), starts, (wh, ww) = window_grid(h, w, protocol)
  # The official code pads the image (bottom/right, black) to at least the crop, cuts
  # the windows at that padded border and pads those cut windows to the crop again:
  # one padding up to where the last window ends gives the same pixels as static slices.
  full_h = max(ph, max(r for r, _ in starts) + wh)
  full_w = max(pw, max(q for _, q in starts) + ww)
  if (full_h, full_w) != (h, w):
    black = normalize(jnp.zeros((3,), jnp.uint8)).astype(image.dtype)
    image = jnp.concatenate([image, jnp.broadcast_to(black, (n, full_h - h, w, c))], axis=1)
    image = jnp.concatenate([image, jnp.broadcast_to(black, (n, full_h, full_w - w, c))],
                            axis=2)
  if len(starts) == 1:
    probs = _window_probs(logits_fn, variables, image[:, :wh, :ww], protocol)
    return probs[:, :h, :w]
  crops = jnp.stack([jax.lax.dynamic_slice_in_dim(
      jax.lax.dynamic_slice_in_dim(image, r, wh, axis=1), q, ww, axis=2) for r, q in starts])
  probs = jax.lax.map(lambda x: _window_probs(logits_fn, variables, x, protocol), crops)
  total = jnp.zeros((n, ph, pw, probs.shape[-1]), probs.dtype)
  count = np.zeros((ph, pw), np.float32)
  for k, (r, q) in enumerate(starts):
    r1, q1 = min(r + wh, ph), min(q + ww, pw)
    count[r:r1, q:q1] += 1
    total = total.at[:, r:r1, q:q1].add(probs[k][:, :r1 - r, :q1 - q])
  total = total / jnp.asarray(count)[None, :, :, None]
  return total[:, :h, :w]


def predict_probs(logits_fn: LogitsFn, variables, images: jax.Array, protocol: Protocol,
                  *, out_size: tuple[int, int] | None = None) -> jax.Array:
  """Summed per-scale probabilities (N, H, W, C) of uint8 images (N, H, W, 3).

  `out_size` (defaults to the image size) is where the result is upsampled to, as
  the official `testval` does when the label is larger than the network input (LIP).
  """
  _, h, w, _ = images.shape
  x = normalize(images)
  total = None
  for scale in protocol.scales:
    sh, sw = protocol.scaled_size(h, w, scale)
    xs = resize_bilinear(x, (sh, sw), align_corners=False)
    # The Cityscapes code runs scales <= 1 on the whole image, whatever the crop.
    whole = protocol.window_layout == 'border' and scale <= 1.0
    probs = _scale_probs(logits_fn, variables, xs,
                         dataclasses.replace(protocol, mode='whole') if whole else protocol)
    probs = resize_bilinear(probs, (h, w), align_corners=protocol.align_corners)
    total = probs if total is None else total + probs
  if out_size is not None and tuple(out_size) != (h, w):
    total = resize_bilinear(total, tuple(out_size), align_corners=protocol.align_corners)
  return total


def seg_logits_fn(model) -> LogitsFn:
  """apply(variables, images) -> the logits the protocol uses (OCR: the final ones)."""
  def fn(variables, images):
    out = model.apply(variables, images, train=False)
    if isinstance(out, dict):
      out = out['logits']
    return out
  return fn

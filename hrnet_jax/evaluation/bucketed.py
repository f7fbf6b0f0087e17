"""The official test protocol on fixed shapes, for datasets whose images vary in size.

`inference.predict_probs` has static shapes per image size, so evaluating a dataset of
hundreds of distinct sizes (PASCAL-Context, ADE20K, user folders) image by image at the
true size compiles the whole protocol hundreds of times. Here every program has shapes
fixed by the configuration, and what varies per image travels as data:

  * the network runs on windows of the protocol's window size (flip included): one
    program per window shape. Where the windows are is computed on the host for the
    true scaled size (`inference.window_grid`) and cut with dynamic_slice;
  * the size-dependent arithmetic (bilinear resizes, window sums and counts, the crop
    back, argmax, confusion matrix) runs on arrays padded to buckets: the image bucket
    (`data.eval_pad_size`, or `eval.resize_input`), per scale the largest scaled size
    an image of that bucket can have, and the label bucket. A bilinear resize of a
    padded array is an einsum with the true-size interpolation matrices zero-padded to
    the bucket: the same products plus zeros. Labels are padded with the ignore label.

Programs: one preparation (resize and window cut, all scales), one network per window
shape, one finishing step per scale: `len(scales) + 2` with sliding windows (per
device: each of this process's devices compiles its own).

Equal to `predict_probs` at the true size to float32 rounding (summation order of the
padded einsums) wherever the official code runs the network on fixed-size windows:
'pad' windows, and 'border' windows of a scaled image at least the crop. Where it runs
the network on the whole scaled image (mode 'whole', 'border' at scales <= 1), this
runs it on the image padded with black (the official padding value) to the canvas; the
mirrored image is mirrored within its true width, so both keep the true-size stride
grid, and the top-left true-size corner of the logits is upsampled with the true-size
matrices. The result then differs only where the network's reach crosses into the
padding: near the right and bottom border (with flip also the left one), by a margin
of the network's receptive field (tests/test_eval_buckets.py measures it). That is the
one departure from true-size inference; an image that fills the bucket (LIP's fixed
`resize_input`) is exact. Not aligned that way: a 'border' window of an image smaller
than the crop runs padded to the crop. `eval.size_buckets = False` keeps true-size
inference.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hrnet_jax.data.normalization import normalize
from hrnet_jax.evaluation import inference
from hrnet_jax.evaluation import metrics
from hrnet_jax.models.resize import linear_weights
from hrnet_jax import xla_cpu

_HIGHEST = jax.lax.Precision.HIGHEST


def largest_scaled_size(protocol: inference.Protocol, bucket, scale: float) -> tuple[int, int]:
  """Largest (height, width) `protocol.scaled_size` gives any image that fits `bucket`.

  Not simply the bucket times the scale: with a fixed base_size, a portrait image in a
  landscape bucket is scaled to the full long side in height. Exhaustive over the
  bucket's sizes (vectorised; the same float64 formula as `scaled_size`).
  """
  hs = np.arange(1, bucket[0] + 1, dtype=np.int64)[:, None]
  ws = np.arange(1, bucket[1] + 1, dtype=np.int64)[None, :]
  base = protocol.base_size or np.maximum(hs, ws)
  long = np.broadcast_to(np.floor(base * scale + 0.5).astype(np.int64), tuple(bucket))
  tall = hs > ws
  height = np.where(tall, long, np.floor(hs * long / ws + 0.5).astype(np.int64))
  width = np.where(tall, np.floor(ws * long / hs + 0.5).astype(np.int64), long)
  return int(height.max()), int(width.max())


@dataclasses.dataclass(frozen=True)
class ScaleShapes:
  """The static shapes of one scale."""
  scale: float
  whole: bool               # the network sees the whole (padded) scaled image
  canvas: tuple[int, int]   # the padded scaled image; every window lies inside it
  window: tuple[int, int]
  slots: int                # windows of the largest image; fewer are masked


def scale_shapes(protocol: inference.Protocol, bucket, scale: float) -> ScaleShapes:
  lh, lw = largest_scaled_size(protocol, bucket, scale)
  whole = protocol.mode == 'whole' or (protocol.window_layout == 'border' and scale <= 1.0)
  if whole:
    return ScaleShapes(scale, True, (lh, lw), (lh, lw), 1)
  (ph, pw), starts, (wh, ww) = inference.window_grid(lh, lw, protocol)
  canvas = (max(ph, max(r for r, _ in starts) + wh), max(pw, max(q for _, q in starts) + ww))
  return ScaleShapes(scale, False, canvas, (wh, ww), len(starts))


def _padded(matrix: np.ndarray, shape) -> np.ndarray:
  out = np.zeros(shape, np.float32)
  out[:matrix.shape[0], :matrix.shape[1]] = matrix
  return out


def _resize(x, rows, cols):
  """Bilinear resize of (N, H, W, C) as `resize_bilinear` computes it, by given matrices."""
  x = jnp.einsum('oh,nhwc->nowc', rows, x, precision=_HIGHEST)
  return jnp.einsum('ow,nhwc->nhoc', cols, x, precision=_HIGHEST)


def scale_data(shapes: ScaleShapes, protocol: inference.Protocol, size, bucket,
               logits=None) -> dict:
  """Host-side data of one image at one scale: interpolation matrices and windows.

  `logits`: for a whole-image scale, ((oh, ow), (stride_h, stride_w)), the network's
  output on the canvas and its stride.
  """
  h, w = size
  sh, sw = protocol.scaled_size(h, w, shapes.scale)
  if shapes.whole:
    starts = [(0, 0)]
  else:
    starts = inference.window_grid(sh, sw, protocol)[1]
  (ch, cw), (wh, ww) = shapes.canvas, shapes.window
  if (sh > ch or sw > cw or len(starts) > shapes.slots
      or max(r for r, _ in starts) + wh > ch or max(q for _, q in starts) + ww > cw):
    # dynamic_slice would clamp a window that leaves the canvas: wrong, not an error.
    raise AssertionError(f'image {h}x{w} at scale {shapes.scale} does not fit {shapes}')
  grid = np.zeros((shapes.slots, 2), np.int32)
  grid[:len(starts)] = starts
  ac = protocol.align_corners
  data = dict(
      down_h=_padded(linear_weights(h, sh, False), (ch, bucket[0])),
      down_w=_padded(linear_weights(w, sw, False), (cw, bucket[1])),
      up_h=_padded(linear_weights(sh, h, ac), (bucket[0], ch)),
      up_w=_padded(linear_weights(sw, w, ac), (bucket[1], cw)),
      scaled=np.array([sh, sw], np.int32), starts=grid,
      valid=np.arange(shapes.slots) < len(starts))
  if shapes.whole:
    # The logits of the true-size image are the top-left corner of the canvas's
    # (the same stride grid, anchored at 0), up to the network's reach into the
    # padding; upsampling that corner with the true-size matrices keeps the official
    # sampling positions everywhere.
    (oh, ow), (th, tw) = logits
    lh, lw = -(-sh // th), -(-sw // tw)
    cols = linear_weights(lw, sw, ac)
    data.update(logits_h=_padded(linear_weights(lh, sh, ac), (ch, oh)),
                logits_w=_padded(cols, (cw, ow)),
                # Upsample and mirror back within the true width, in one matrix.
                logits_w_mirrored=_padded(cols[::-1], (cw, ow)))
  return data


class BucketedPredictor:
  """Confusion matrix and prediction of one image on fixed-shape programs.

  `__call__(image, label, device, variables)` takes the image and label at their true
  sizes (within `image_bucket` and `label_bucket`) and returns device arrays: the
  (C, C) confusion matrix, the prediction and the summed probabilities, both padded
  to `label_bucket` (their top-left label-sized corner is the result).
  """

  def __init__(self, model, *, protocol: inference.Protocol, image_bucket, label_bucket,
               num_classes: int, ignore_label: int, resize_output: bool,
               bucket_setting: str = 'config.data.eval_pad_size'):
    self.protocol = protocol
    self.image_bucket = tuple(int(x) for x in image_bucket)
    self.label_bucket = tuple(int(x) for x in label_bucket)
    if not resize_output and self.image_bucket != self.label_bucket:
      raise ValueError(f'image bucket {self.image_bucket} and label bucket '
                       f'{self.label_bucket} differ: that needs resize_output=True.')
    self.num_classes = num_classes
    self.ignore_label = ignore_label
    self.resize_output = resize_output
    self.bucket_setting = bucket_setting
    self.shapes = [scale_shapes(protocol, self.image_bucket, s) for s in protocol.scales]
    self._logits_fn = inference.seg_logits_fn(model)
    # pylint: disable=protected-access
    self._network = xla_cpu.jit(
        lambda v, x: inference._window_probs(self._logits_fn, v, x, protocol))
    self._flip_permutation = inference._flip_permutation(num_classes, protocol.flip_pairs)
    # pylint: enable=protected-access
    self._logits = xla_cpu.jit(lambda v, x: self._logits_fn(v, x).astype(jnp.float32))
    self._whole = None   # per whole-image scale: its logits' shape and stride
    # Resizes, masks and sums only, no residual chain: XLA's own fusion suits them.
    self._prepare = jax.jit(self._prepare_fn)
    last = len(self.shapes) - 1
    self._finish = [jax.jit(self._finish_fn(s, first=i == 0, last=i == last))
                    for i, s in enumerate(self.shapes)]

  def _prepare_fn(self, image, per_scale):
    """Every scale's windows, each (1, wh, ww, 3), of the normalised uint8 image."""
    x = normalize(image[None])
    black = normalize(jnp.zeros((3,), jnp.uint8))
    out = []
    for shapes, d in zip(self.shapes, per_scale):
      y = _resize(x, d['down_h'], d['down_w'])
      (ch, cw), (wh, ww) = shapes.canvas, shapes.window
      inside = ((jnp.arange(ch) < d['scaled'][0])[:, None]
                & (jnp.arange(cw) < d['scaled'][1])[None, :])
      # The official padding: black (normalised zeros) right and below the image.
      y = jnp.where(inside[None, :, :, None], y, black)
      if shapes.whole:
        if self.protocol.flip:
          # Mirrored within the true width, the padding staying on the right: the
          # mirrored image's logits stay on the stride grid of the true-size ones.
          cols = jnp.arange(cw)
          mirror = jnp.where(cols < d['scaled'][1], d['scaled'][1] - 1 - cols, cols)
          y = jnp.concatenate([y, jnp.take(y, mirror, axis=2)], axis=0)
        out.append((y,))
        continue
      out.append(tuple(
          jax.lax.dynamic_slice(y, (0, d['starts'][k, 0], d['starts'][k, 1], 0),
                                (1, wh, ww, 3))
          for k in range(shapes.slots)))
    return tuple(out)

  def _finish_fn(self, shapes: ScaleShapes, *, first: bool, last: bool):
    def finish(probs, d, total, out):
      c = probs[0].shape[-1]
      if shapes.whole:
        scaled = self._whole_probs(probs[0], d)
      else:
        scaled = self._window_sum(shapes, probs, d, c)
      probs_at_image = _resize(scaled, d['up_h'], d['up_w'])
      total = probs_at_image if first else total + probs_at_image
      if not last:
        return total
      if self.resize_output:
        total = _resize(total, out['rows'], out['cols'])
      pred = jnp.argmax(total, axis=-1).astype(jnp.int32)
      cm = metrics.local_confusion_matrix(pred, out['label'][None],
                                          num_classes=self.num_classes,
                                          ignore_label=self.ignore_label)
      return cm, pred[0], total[0]

    return finish

  def _whole_probs(self, logits, d):
    """`inference._window_probs` of the whole image, from the canvas's logits."""
    up = _resize(logits[:1], d['logits_h'], d['logits_w'])
    if self.protocol.flip:
      mirrored = logits[1:]
      if self.protocol.flip_pairs:
        mirrored = mirrored[..., self._flip_permutation]
      up = (up + _resize(mirrored, d['logits_h'], d['logits_w_mirrored'])) * 0.5
    return jnp.exp(up)

  @staticmethod
  def _window_sum(shapes: ScaleShapes, probs, d, c):
    """The windows added up and divided by their count, on the canvas."""
    (ch, cw), (wh, ww) = shapes.canvas, shapes.window
    acc = jnp.zeros((1, ch, cw, c), jnp.float32)
    count = jnp.zeros((1, ch, cw, 1), jnp.float32)
    # In window order, as the official loop adds them; masked slots add exact zeros.
    for k, p in enumerate(probs):
      at = (0, d['starts'][k, 0], d['starts'][k, 1], 0)
      p = jnp.where(d['valid'][k], p.astype(jnp.float32), 0.0)
      acc = jax.lax.dynamic_update_slice(
          acc, jax.lax.dynamic_slice(acc, at, (1, wh, ww, c)) + p, at)
      one = jnp.where(d['valid'][k], 1.0, 0.0)
      count = jax.lax.dynamic_update_slice(
          count, jax.lax.dynamic_slice(count, at, (1, wh, ww, 1)) + one, at)
    # Canvas pixels no window covers get weight 0 later; 0/0 would make that NaN.
    return acc / jnp.maximum(count, 1.0)

  def _whole_logit_shapes(self, variables) -> dict[int, tuple]:
    """{scale index: ((oh, ow), stride)} of the logits on each whole-image canvas.

    The true-size image's logits are then ceil(size / stride) in each axis; checked on
    the canvas and the sizes just below it, which cover every remainder of the stride.
    """
    def out_size(h, w):
      x = jax.ShapeDtypeStruct((1, h, w, 3), jnp.float32)
      return tuple(jax.eval_shape(self._logits_fn, variables, x).shape[1:3])

    info = {}
    for i, s in enumerate(self.shapes):
      if not s.whole:
        continue
      ch, cw = s.canvas
      oh, ow = out_size(ch, cw)
      stride = (max(1, round(ch / oh)), max(1, round(cw / ow)))
      for k in range(max(stride)):
        h, w = max(ch - k, 1), max(cw - k, 1)
        got = out_size(h, w)
        if got != (-(-h // stride[0]), -(-w // stride[1])):
          raise ValueError(
              f'the network maps a {h}x{w} input to {got[0]}x{got[1]} logits, not to the '
              f'input size divided by {stride} rounded up, which whole-image evaluation '
              'of varying-size images on fixed shapes assumes: set '
              'config.eval.size_buckets = False.')
      info[i] = ((oh, ow), stride)
    return info

  def _check_fits(self, what: str, size, bucket, setting: str):
    if size[0] > bucket[0] or size[1] > bucket[1]:
      raise ValueError(f'{what} is {size[0]}x{size[1]}, larger than {setting}={bucket}: '
                       f'raise {setting} to at least the largest {what}.')

  def __call__(self, image: np.ndarray, label: np.ndarray, device, variables) -> Any:
    h, w = image.shape[:2]
    lh, lw = label.shape
    self._check_fits('image', (h, w), self.image_bucket, self.bucket_setting)
    self._check_fits('label', (lh, lw), self.label_bucket, 'config.data.eval_pad_size')
    padded_image = np.zeros(self.image_bucket + (3,), np.uint8)
    padded_image[:h, :w] = image
    padded_label = np.full(self.label_bucket, self.ignore_label, np.int32)
    padded_label[:lh, :lw] = label
    if self._whole is None:
      self._whole = self._whole_logit_shapes(variables)
    per_scale = [scale_data(s, self.protocol, (h, w), self.image_bucket, self._whole.get(i))
                 for i, s in enumerate(self.shapes)]
    used = [int(d['valid'].sum()) for d in per_scale]
    out = {'label': padded_label}
    if self.resize_output:
      ac = self.protocol.align_corners
      out['rows'] = _padded(linear_weights(h, lh, ac), (self.label_bucket[0], self.image_bucket[0]))
      out['cols'] = _padded(linear_weights(w, lw, ac), (self.label_bucket[1], self.image_bucket[1]))
    padded_image, per_scale, out = jax.device_put((padded_image, per_scale, out), device)
    windows = self._prepare(padded_image, per_scale)
    total = None
    for i, (shapes, d) in enumerate(zip(self.shapes, per_scale)):
      if shapes.whole:
        probs = [self._logits(variables, windows[i][0])]
      else:
        # Only the image's own windows run; the masked slots still need an array of
        # the window's shape, any computed one.
        probs = [self._network(variables, x) for x in windows[i][:used[i]]]
        probs += [probs[0]] * (shapes.slots - used[i])
      total = self._finish[i](tuple(probs), d, total, out)
    return total

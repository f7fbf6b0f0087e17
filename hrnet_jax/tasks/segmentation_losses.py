"""Segmentation losses of the official HRNet code.

Segmentation logits come out at 1/4 resolution; every loss first upsamples them
bilinearly to the label size (align_corners as the model family: False for
`pytorch-v1.1`, True for `HRNet-OCR`), as the official criteria do.

Chunks. The official trainers compute the loss separately on each GPU (3 images in
the Cityscapes recipe) and average the per-GPU losses. Both the weighted mean of the
cross-entropy and the OHEM threshold depend on which pixels are pooled together, so
`chunk_images` reproduces that pooling: the batch is cut into groups of that many
images, each group gets its own loss, and the groups are averaged. The result does
not depend on how many devices run the step. `chunk_images=0` pools the whole batch.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from hrnet_jax.models import resize
from hrnet_jax.models.layers import at_least_f32


def upsample_logits(logits: jax.Array, size: Sequence[int], *, align_corners: bool) -> jax.Array:
  """float32 logits (N, h, w, C) -> (N, H, W, C) at the label size."""
  return resize.resize_bilinear(logits.astype(at_least_f32(logits.dtype)), tuple(size),
                                align_corners=align_corners)


def _pixel_nll(logits: jax.Array, labels: jax.Array, ignore_label: int):
  """(-log p_true, p_true, valid) per pixel; ignored pixels read class 0."""
  valid = labels != ignore_label
  safe = jnp.where(valid, labels, 0).astype(jnp.int32)
  logp = jax.nn.log_softmax(logits.astype(at_least_f32(logits.dtype)), axis=-1)
  logp_true = jnp.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
  return -logp_true, jnp.exp(logp_true), valid, safe


def _weights(safe_labels: jax.Array, class_weights: Sequence[float] | None,
             dtype=jnp.float32) -> jax.Array:
  if class_weights is None or len(class_weights) == 0:
    return jnp.ones(safe_labels.shape, dtype)
  return jnp.asarray(class_weights, dtype)[safe_labels]


def _check_classes(logits: jax.Array, class_weights) -> None:
  if class_weights is not None and len(class_weights) not in (0, logits.shape[-1]):
    raise ValueError(f'config.loss.class_weights has {len(class_weights)} entries but the '
                     f'model predicts {logits.shape[-1]} classes; give one weight per class '
                     'or () for none.')


def weighted_cross_entropy(logits: jax.Array, labels: jax.Array, *,
                           class_weights: Sequence[float] | None = None,
                           ignore_label: int = 255) -> jax.Array:
  """torch CrossEntropyLoss(weight, ignore_index) with mean reduction, on one chunk.

  sum_i w[y_i] * nll_i / sum_i w[y_i] over non-ignored pixels; 0 (not NaN) when every
  pixel is ignored.
  """
  _check_classes(logits, class_weights)
  nll, _, valid, safe = _pixel_nll(logits, labels, ignore_label)
  w = jnp.where(valid, _weights(safe, class_weights, nll.dtype), 0.0)
  total = jnp.sum(w)
  return jnp.where(total > 0, jnp.sum(w * nll) / jnp.where(total > 0, total, 1.0), 0.0)


def ohem_cross_entropy(logits: jax.Array, labels: jax.Array, *,
                       class_weights: Sequence[float] | None = None, ignore_label: int = 255,
                       thresh: float = 0.9, min_kept: int = 131072) -> jax.Array:
  """The official OhemCrossEntropy on one chunk.

  Over non-ignored pixels, p = softmax probability of the true class; threshold =
  max(sorted(p)[min(min_kept, n - 1)], thresh); the loss is the plain mean of the
  weighted per-pixel CE of pixels with p < threshold. 0 when nothing is kept (the
  official code would fail or give NaN there).
  """
  _check_classes(logits, class_weights)
  nll, p, valid, safe = _pixel_nll(logits, labels, ignore_label)
  pixel_loss = _weights(safe, class_weights, nll.dtype) * nll
  p_flat = p.reshape(-1)
  valid_flat = valid.reshape(-1)
  # Ignored pixels sort after every probability (which are <= 1).
  p_sorted = jnp.sort(jnp.where(valid_flat, p_flat, 2.0))
  n = jnp.sum(valid_flat)
  k = jnp.clip(jnp.minimum(min_kept, n - 1), 0, p_flat.size - 1)
  threshold = jnp.maximum(p_sorted[k], thresh)
  keep = valid_flat & (p_flat < threshold)
  count = jnp.sum(keep)
  total = jnp.sum(jnp.where(keep, pixel_loss.reshape(-1), 0.0))
  return jnp.where(count > 0, total / jnp.maximum(count, 1), 0.0)


def _chunked(fn, logits: jax.Array, labels: jax.Array, chunk_images: int) -> jax.Array:
  n = logits.shape[0]
  if not chunk_images or chunk_images >= n:
    if chunk_images and chunk_images > n:
      raise ValueError(f'config.loss.chunk_images={chunk_images} exceeds the batch of {n} '
                       'images in one step; lower it or raise the batch size.')
    return fn(logits, labels)
  if n % chunk_images:
    raise ValueError(f'a batch of {n} images cannot be cut into loss chunks of '
                     f'config.loss.chunk_images={chunk_images}; make the per-step batch a '
                     'multiple of it (or set it to 0).')
  g = n // chunk_images
  per_chunk = jax.vmap(fn)(logits.reshape((g, chunk_images) + logits.shape[1:]),
                           labels.reshape((g, chunk_images) + labels.shape[1:]))
  return jnp.mean(per_chunk)


def segmentation_loss(outputs: Any, labels: jax.Array, *, loss_config: Any,
                      align_corners: bool, ignore_label: int) -> jax.Array:
  """Loss of a 'seg' (logits) or 'ocr' ({'logits', 'aux_logits'}) output.

  OCR as the official HRNet-OCR criterion: aux_weight * CE(aux) + 1.0 * L(final), where
  the aux term is always plain (weighted) CE and L is OHEM when enabled.
  """
  weights = tuple(loss_config.class_weights or ())
  size = labels.shape[1:3]

  def ce(x, y):
    return weighted_cross_entropy(x, y, class_weights=weights, ignore_label=ignore_label)

  def final(x, y):
    if loss_config.ohem:
      return ohem_cross_entropy(x, y, class_weights=weights, ignore_label=ignore_label,
                                thresh=loss_config.ohem_thresh,
                                min_kept=int(loss_config.ohem_min_kept))
    return ce(x, y)

  chunk = int(loss_config.get('chunk_images', 0) or 0)
  if isinstance(outputs, dict):
    main = upsample_logits(outputs['logits'], size, align_corners=align_corners)
    aux = upsample_logits(outputs['aux_logits'], size, align_corners=align_corners)
    return (loss_config.aux_weight * _chunked(ce, aux, labels, chunk)
            + _chunked(final, main, labels, chunk))
  logits = upsample_logits(outputs, size, align_corners=align_corners)
  return _chunked(final, logits, labels, chunk)


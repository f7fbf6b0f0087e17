"""Losses against numpy re-implementations of the official criteria and torch."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hrnet_jax.tasks import classification
from hrnet_jax.tasks import segmentation_losses as losses

IGNORE = 255
WEIGHTS = (0.8373, 0.918, 0.866, 1.0345, 1.0166)


def _softmax(x):
  x = x - x.max(-1, keepdims=True)
  e = np.exp(x)
  return e / e.sum(-1, keepdims=True)


def np_weighted_ce(logits, labels, weights):
  """PyTorch CrossEntropyLoss(weight, ignore_index) mean: weighted sum / sum of weights."""
  logits = logits.astype(np.float64).reshape(-1, logits.shape[-1])
  labels = labels.reshape(-1)
  num, den = 0.0, 0.0
  for row, y in zip(logits, labels):
    if y == IGNORE:
      continue
    w = 1.0 if weights is None else weights[y]
    num += w * -np.log(_softmax(row)[y])
    den += w
  return num / den if den else 0.0


def np_ohem(logits, labels, weights, thresh, min_kept):
  """Line by line the official `_ohem_forward` (scores already at the label size)."""
  c = logits.shape[-1]
  logits = logits.astype(np.float64).reshape(-1, c)
  target = labels.reshape(-1)
  pred = _softmax(logits)
  mask = target != IGNORE
  tmp = np.where(mask, target, 0)
  w = np.ones(c) if weights is None else np.asarray(weights)
  pixel_losses = np.where(mask, w[tmp] * -np.log(pred[np.arange(len(tmp)), tmp]), 0.0)
  p = pred[np.arange(len(tmp)), tmp][mask]
  ind = np.argsort(p, kind='stable')
  p = p[ind]
  if p.size == 0:
    return 0.0
  min_value = p[min(min_kept, p.size - 1)]
  threshold = max(min_value, thresh)
  kept = pixel_losses[mask][ind][p < threshold]
  return kept.mean() if kept.size else 0.0


def _data(seed, n=2, h=6, w=7, c=5, scale=3.0, ignore_frac=0.2):
  rng = np.random.default_rng(seed)
  logits = (rng.normal(size=(n, h, w, c)) * scale).astype(np.float32)
  labels = rng.integers(0, c, size=(n, h, w)).astype(np.int32)
  labels[rng.random((n, h, w)) < ignore_frac] = IGNORE
  return logits, labels


@pytest.mark.parametrize('weights', [None, WEIGHTS])
def test_weighted_ce_matches_numpy_and_torch(weights):
  logits, labels = _data(0)
  got = losses.weighted_cross_entropy(jnp.asarray(logits), jnp.asarray(labels),
                                      class_weights=weights, ignore_label=IGNORE)
  np.testing.assert_allclose(got, np_weighted_ce(logits, labels, weights), rtol=1e-5)
  crit = torch.nn.CrossEntropyLoss(
      weight=None if weights is None else torch.tensor(weights), ignore_index=IGNORE)
  ref = crit(torch.from_numpy(logits).permute(0, 3, 1, 2), torch.from_numpy(labels).long())
  np.testing.assert_allclose(got, ref.item(), rtol=1e-5)


@pytest.mark.parametrize('min_kept,thresh', [(10, 0.7), (40, 0.01), (1000, 0.9)])
def test_ohem_matches_official_formula(min_kept, thresh):
  logits, labels = _data(1, scale=4.0)
  want = np_ohem(logits, labels, WEIGHTS, thresh, min_kept)
  got = losses.ohem_cross_entropy(jnp.asarray(logits), jnp.asarray(labels),
                                  class_weights=WEIGHTS, ignore_label=IGNORE,
                                  thresh=thresh, min_kept=min_kept)
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_ohem_threshold_regimes_differ():
  # The cases above must exercise both branches of max(sorted_p[k], thresh).
  logits, labels = _data(1, scale=4.0)
  p = _softmax(logits.astype(np.float64))
  valid = labels != IGNORE
  p_true = np.take_along_axis(p, np.where(valid, labels, 0)[..., None], -1)[..., 0][valid]
  s = np.sort(p_true)
  assert s[10] < 0.7                     # (10, 0.7): thresh wins
  assert s[40] > 0.01                    # (40, 0.01): the sorted value wins
  assert s[-1] > 0.9 and len(s) < 1000   # (1000, 0.9): clamped to n - 1, sorted wins


@pytest.mark.slow
def test_all_ignore_batch_is_zero_with_finite_gradients():
  logits, _ = _data(2)
  labels = np.full(logits.shape[:3], IGNORE, np.int32)
  for fn in (lambda x: losses.weighted_cross_entropy(x, labels, class_weights=WEIGHTS),
             lambda x: losses.ohem_cross_entropy(x, labels, class_weights=WEIGHTS,
                                                 min_kept=5)):
    value, grad = jax.value_and_grad(fn)(jnp.asarray(logits))
    assert float(value) == 0.0
    assert np.all(np.isfinite(grad)) and not np.any(grad)


def _loss_config(**kw):
  cfg = ml_collections.ConfigDict(dict(class_weights=WEIGHTS, ohem=False, ohem_thresh=0.9,
                                       ohem_min_kept=20, aux_weight=0.4, chunk_images=0))
  cfg.update(kw)
  return cfg


def _torch_up(logits, size, align_corners):
  t = torch.from_numpy(logits).permute(0, 3, 1, 2)
  return F.interpolate(t, size=size, mode='bilinear',
                       align_corners=align_corners).permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize('align_corners', [False, True])
def test_segmentation_loss_upsamples_like_torch(align_corners):
  logits, _ = _data(3, n=2, h=5, w=6)
  _, labels = _data(4, n=2, h=17, w=23)
  got = losses.segmentation_loss(jnp.asarray(logits), jnp.asarray(labels),
                                 loss_config=_loss_config(), align_corners=align_corners,
                                 ignore_label=IGNORE)
  up = _torch_up(logits, (17, 23), align_corners)
  np.testing.assert_allclose(got, np_weighted_ce(up, labels, WEIGHTS), rtol=1e-5)


@pytest.mark.slow
def test_chunks_average_per_chunk_losses():
  # As the official per-GPU loss: OHEM on each group of 2 images, then the mean.
  logits, labels = _data(5, n=4)
  cfg = _loss_config(ohem=True, chunk_images=2)
  got = losses.segmentation_loss(jnp.asarray(logits), jnp.asarray(labels), loss_config=cfg,
                                 align_corners=False, ignore_label=IGNORE)
  want = np.mean([np_ohem(logits[i:i + 2], labels[i:i + 2], WEIGHTS, 0.9, 20)
                  for i in (0, 2)])
  np.testing.assert_allclose(got, want, rtol=1e-5)
  whole = np_ohem(logits, labels, WEIGHTS, 0.9, 20)
  assert abs(whole - want) > 1e-4   # chunking is not a no-op
  with pytest.raises(ValueError, match='chunk_images=3'):
    losses.segmentation_loss(jnp.asarray(logits), jnp.asarray(labels),
                             loss_config=_loss_config(chunk_images=3),
                             align_corners=False, ignore_label=IGNORE)


def test_ocr_loss_is_weighted_aux_ce_plus_final_ohem():
  logits, _ = _data(6, h=4, w=4)
  aux, _ = _data(7, h=4, w=4)
  _, labels = _data(8, h=9, w=11)
  cfg = _loss_config(ohem=True)
  got = losses.segmentation_loss({'logits': jnp.asarray(logits), 'aux_logits': jnp.asarray(aux)},
                                 jnp.asarray(labels), loss_config=cfg, align_corners=True,
                                 ignore_label=IGNORE)
  want = (0.4 * np_weighted_ce(_torch_up(aux, (9, 11), True), labels, WEIGHTS)
          + np_ohem(_torch_up(logits, (9, 11), True), labels, WEIGHTS, 0.9, 20))
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_wrong_number_of_class_weights_is_a_clear_error():
  logits, labels = _data(9)
  with pytest.raises(ValueError, match='class_weights has 3 entries'):
    losses.weighted_cross_entropy(jnp.asarray(logits), jnp.asarray(labels),
                                  class_weights=(1.0, 2.0, 3.0))


@pytest.mark.parametrize('smoothing', [0.0, 0.1])
def test_classification_loss_matches_torch(smoothing):
  rng = np.random.default_rng(10)
  logits = rng.normal(size=(6, 10)).astype(np.float32)
  labels = rng.integers(0, 10, 6)
  got = classification.classification_loss(jnp.asarray(logits), jnp.asarray(labels),
                                           label_smoothing=smoothing)
  ref = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels),
                        label_smoothing=smoothing)
  np.testing.assert_allclose(got, ref.item(), rtol=1e-5)

"""MPII PCKh (lib/dataset/mpii.py evaluate) and facial-landmark NME, failure rate and AUC
(HRNet-Facial-Landmark-Detection lib/core/evaluation.py compute_nme).

The official landmark code reports NME and the fraction of images with NME > 0.08 and
> 0.10; it has no AUC. `landmark_metrics` adds AUC@0.1 (the area under the cumulative
error distribution up to 0.1, divided by 0.1) because papers report it.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

# MPII joint order of the annotation and of gt_valid.mat's `dataset_joints`.
MPII_JOINTS = ('rank', 'rkne', 'rhip', 'lhip', 'lkne', 'lank', 'pelv', 'thor', 'neck',
               'head', 'rwri', 'relb', 'rsho', 'lsho', 'lelb', 'lwri')
_MPII_TABLE = (('Head', ('head',)), ('Shoulder', ('lsho', 'rsho')), ('Elbow', ('lelb', 'relb')),
               ('Wrist', ('lwri', 'rwri')), ('Hip', ('lhip', 'rhip')),
               ('Knee', ('lkne', 'rkne')), ('Ankle', ('lank', 'rank')))
SC_BIAS = 0.6   # PCKh uses 60% of the head box diagonal


def mpii_pckh(preds: np.ndarray, gt: np.ndarray, headboxes: np.ndarray, missing: np.ndarray,
              threshold: float = 0.5) -> dict[str, float]:
  """The official MPII table, in percent.

  Args:
    preds: (N, 16, 2) predictions in 0-based image pixels (the official code adds 1).
    gt: (N, 16, 2) ground truth as gt_valid.mat's pos_gt_src (1-based).
    headboxes: (N, 2, 2) [[x1, y1], [x2, y2]] (headboxes_src).
    missing: (N, 16) 1 where the joint is not annotated (jnt_missing).

  Mean is weighted by the number of visible joints and leaves out pelvis and thorax;
  'Mean@0.1' is, as in the official code, the mean at threshold 0.11 (pckAll[11]).
  """
  preds = np.asarray(preds, np.float64) + 1.0
  visible = 1 - np.asarray(missing, np.float64)
  err = np.linalg.norm(preds - np.asarray(gt, np.float64), axis=-1)
  head = np.linalg.norm(np.asarray(headboxes, np.float64)[:, 1] -
                        np.asarray(headboxes, np.float64)[:, 0], axis=-1) * SC_BIAS
  scaled = err / head[:, None] * visible
  count = visible.sum(axis=0)

  def pck(t):
    return 100.0 * ((scaled <= t) * visible).sum(axis=0) / count

  at_half, at_011 = pck(threshold), pck(np.arange(0, 0.5 + 0.01, 0.01)[11])
  keep = np.ones(len(MPII_JOINTS), bool)
  keep[[MPII_JOINTS.index('pelv'), MPII_JOINTS.index('thor')]] = False
  ratio = np.where(keep, count, 0) / count[keep].sum()
  out = {}
  for name, joints in _MPII_TABLE:
    out[name] = float(np.mean([at_half[MPII_JOINTS.index(j)] for j in joints]))
  out['Mean'] = float(np.sum(np.where(keep, at_half, 0) * ratio))
  out['Mean@0.1'] = float(np.sum(np.where(keep, at_011, 0) * ratio))
  return out


def landmark_normalisers(gt: np.ndarray, dataset: str,
                         box_size: Optional[np.ndarray] = None) -> np.ndarray:
  """Per-image NME denominator of each dataset (compute_nme): WFLW outer eye corners
  60-72, 300W 36-45, COFW 8-9 (0-based), AFLW the annotation's box_size."""
  gt = np.asarray(gt, np.float64)
  pairs = {'wflw': (60, 72), '300w': (36, 45), 'cofw': (8, 9)}
  key = dataset.lower()
  if key == 'aflw':
    if box_size is None:
      raise ValueError('AFLW NME needs the box_size of every face')
    return np.asarray(box_size, np.float64).reshape(-1)
  if key not in pairs:
    raise ValueError(f'no NME normalisation for dataset {dataset!r}; '
                     'choose wflw, 300w, cofw or aflw')
  a, b = pairs[key]
  return np.linalg.norm(gt[:, a] - gt[:, b], axis=-1)


def nme_per_image(preds: np.ndarray, gt: np.ndarray, normalisers: np.ndarray) -> np.ndarray:
  """sum_l ||p_l - g_l|| / (L * d) per image."""
  preds, gt = np.asarray(preds, np.float64), np.asarray(gt, np.float64)
  return np.linalg.norm(preds - gt, axis=-1).sum(axis=1) / (gt.shape[1] * normalisers)


def landmark_metrics(nme: np.ndarray, auc_limit: float = 0.1) -> dict[str, float]:
  """NME (mean over images), FR@0.08 and FR@0.1 (fraction of images above), AUC@limit."""
  nme = np.asarray(nme, np.float64)
  return {
      'NME': float(nme.mean()),
      'FR@0.08': float((nme > 0.08).mean()),
      'FR@0.1': float((nme > 0.10).mean()),
      # Integral over t in [0, limit] of the fraction of images with NME <= t equals the
      # mean of max(0, limit - nme); divided by the limit so that 1 is perfect.
      f'AUC@{auc_limit:g}': float(np.maximum(0.0, auc_limit - nme).mean() / auc_limit),
  }

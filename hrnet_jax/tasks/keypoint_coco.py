"""COCO keypoint evaluation as the official pose code runs it (lib/dataset/coco.py
evaluate, lib/nms/nms.py): rescoring, OKS-NMS per image, the results json, COCOeval.

The AP printed is pycocotools' own (COCOeval with iouType 'keypoints' on the json we
write), so it can be recomputed by hand from the file.
"""
from __future__ import annotations

import collections
import contextlib
import io
import json
import os
from typing import Any, Mapping, Optional, Sequence

import numpy as np

# Per-joint OKS sigmas of COCO's 17 joints (pycocotools and lib/nms/nms.py).
COCO_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07,
                        .87, .87, .89, .89]) / 10.0
STAT_NAMES = ('AP', 'Ap .5', 'AP .75', 'AP (M)', 'AP (L)', 'AR', 'AR .5', 'AR .75',
              'AR (M)', 'AR (L)')


class KeypointEvalError(ValueError):
  """Results or ground truth that cannot be scored; the message is one line."""


def rescore(maxvals: np.ndarray, box_scores: np.ndarray, in_vis_thre: float = 0.2
            ) -> np.ndarray:
  """Person score = mean of the joint maxima above `in_vis_thre` (0 if none) x box score."""
  maxvals = np.asarray(maxvals, np.float64).reshape(len(box_scores), -1)
  above = maxvals > in_vis_thre
  count = above.sum(axis=1)
  kpt = np.where(count > 0, (maxvals * above).sum(axis=1) / np.maximum(count, 1), 0.0)
  return kpt * np.asarray(box_scores, np.float64)


def oks(reference: np.ndarray, others: np.ndarray, area_ref: float, area_others: np.ndarray,
        sigmas: np.ndarray) -> np.ndarray:
  """OKS of one (J, 3) pose against (M, J, 3) poses, over all joints (no visibility
  filter), areas being the padded box areas prod(200 * scale) (lib/nms/nms.py oks_iou)."""
  variances = (np.asarray(sigmas, np.float64) * 2) ** 2
  d2 = ((others[..., :2] - reference[None, :, :2]) ** 2).sum(-1)
  e = d2 / variances / ((area_ref + np.asarray(area_others)[:, None]) / 2 + np.spacing(1)) / 2
  return np.exp(-e).mean(axis=1)


def oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, threshold: float,
            sigmas: np.ndarray) -> list[int]:
  """Greedy by score; drops every pose whose OKS with a kept one exceeds `threshold`."""
  keypoints = np.asarray(keypoints, np.float64)
  order = np.asarray(scores).argsort()[::-1]   # the official (unstable) order
  keep = []
  while order.size > 0:
    i = order[0]
    keep.append(int(i))
    overlap = oks(keypoints[i], keypoints[order[1:]], areas[i], areas[order[1:]], sigmas)
    order = order[np.where(overlap <= threshold)[0] + 1]
  return keep


def coco_results(image_ids: Sequence[int], keypoints: np.ndarray, centers: np.ndarray,
                 scales: np.ndarray, box_scores: np.ndarray, *, category_id: int = 1,
                 in_vis_thre: float = 0.2, oks_thre: float = 0.9,
                 sigmas: Optional[np.ndarray] = None) -> list[dict[str, Any]]:
  """One result per person kept by rescoring + OKS-NMS, in the official json format.

  keypoints (N, J, 3) = (x, y, heatmap maximum) in image pixels; centers, scales (N, 2);
  box_scores (N,) (1 for ground-truth boxes).
  """
  keypoints = np.asarray(keypoints, np.float64)
  sigmas = COCO_SIGMAS if sigmas is None else np.asarray(sigmas, np.float64)
  if len(sigmas) != keypoints.shape[1]:
    raise KeypointEvalError(f'{len(sigmas)} OKS sigmas for {keypoints.shape[1]} joints; '
                            'set config.keypoints.oks_sigmas to one sigma per joint')
  scores = rescore(keypoints[..., 2], box_scores, in_vis_thre)
  areas = np.prod(np.asarray(scales, np.float64) * 200, axis=1)
  by_image = collections.defaultdict(list)
  for i, image_id in enumerate(image_ids):
    by_image[int(image_id)].append(i)
  results = []
  for image_id, rows in by_image.items():
    rows = np.asarray(rows)
    keep = oks_nms(keypoints[rows], scores[rows], areas[rows], oks_thre, sigmas)
    for i in rows[keep]:
      results.append({
          'image_id': image_id, 'category_id': int(category_id),
          'keypoints': [float(v) for v in keypoints[i].reshape(-1)],
          'score': float(scores[i]),
          'center': [float(v) for v in centers[i]], 'scale': [float(v) for v in scales[i]]})
  return results


def write_results(path: str, results: list[dict[str, Any]]) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'w') as f:
    json.dump(results, f, sort_keys=True)
  return path


def evaluate_results(ground_truth: str | Mapping[str, Any], results_path: str, *,
                     sigmas: Optional[np.ndarray] = None, quiet: bool = True
                     ) -> dict[str, float]:
  """COCOeval(gt, dt, 'keypoints') as the official _do_python_keypoint_eval; the ten
  summary numbers under the official names (AP, 'Ap .5', ..., 'AR (L)').

  `ground_truth` is the annotation json path or its loaded dict.
  """
  from pycocotools.coco import COCO  # pylint: disable=g-import-not-at-top
  from pycocotools.cocoeval import COCOeval  # pylint: disable=g-import-not-at-top
  with open(results_path) as f:
    results = json.load(f)
  sink = io.StringIO()
  with contextlib.redirect_stdout(sink) if quiet else contextlib.nullcontext():
    gt = COCO()
    if isinstance(ground_truth, (str, os.PathLike)):
      with open(ground_truth) as f:
        gt.dataset = json.load(f)
    else:
      gt.dataset = dict(ground_truth)
    gt.createIndex()
    if not results:
      raise KeypointEvalError(f'{results_path}: no detections to score')
    unknown = sorted({r['image_id'] for r in results} - set(gt.getImgIds()))
    if unknown:
      raise KeypointEvalError(f'{results_path}: results for image ids {unknown[:3]} that the '
                              'ground truth does not have')
    dt = gt.loadRes(results_path)
    coco_eval = COCOeval(gt, dt, 'keypoints')
    coco_eval.params.useSegm = None
    if sigmas is not None:
      coco_eval.params.kpt_oks_sigmas = np.asarray(sigmas, np.float64)
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
  return {name: float(coco_eval.stats[i]) for i, name in enumerate(STAT_NAMES)}

"""The landmark evaluator: heatmaps on device, the official decoding and NME on the host,
over the predictions of every process."""
from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np

from hrnet_jax import xla_cpu
from hrnet_jax.data import normalization
from hrnet_jax.data import registry
from hrnet_jax.evaluation import evaluator
from hrnet_jax.tasks import keypoint_decode as kd
from hrnet_jax.tasks import keypoint_metrics as km
from hrnet_jax.tasks import landmarks as lm_task
from hrnet_jax.tasks.keypoint_eval import _gather


@functools.lru_cache(maxsize=8)
def make_heatmap_step(model):
  return xla_cpu.jit(lambda variables, images: model.apply(
      variables, normalization.normalize(images), train=False).astype(jax.numpy.float32))


class LandmarkEvaluator:
  """`Evaluator` of the landmarks task."""

  def __init__(self, model, variables, *, config, mesh):
    self.variables, self.mesh = variables, mesh
    self.dataset = lm_task.face_dataset(registry.get_dataset_info(config.data.name))
    self.step = make_heatmap_step(model)
    self.rows: list[dict[str, np.ndarray]] = []

  def update(self, batch) -> Any:
    heatmaps = evaluator.local_rows(
        self.step(self.variables, evaluator.to_global(batch['image'], self.mesh)), self.mesh)
    preds = kd.landmark_predictions(heatmaps, batch['center'], batch['scale'])
    self.rows.append({'preds': preds, 'gt': np.asarray(batch['landmarks'], np.float64),
                      'box_size': np.asarray(batch['box_size'], np.float64),
                      'mask': evaluator.batch_mask(batch)})
    return preds

  def local_predictions(self, outputs) -> np.ndarray:
    return np.asarray(outputs)

  def picture(self, batch, predictions: np.ndarray, i: int):
    """(crop, predicted and ground-truth landmarks in crop pixels)."""
    size = batch['image'].shape[1]
    factor = size / (200.0 * float(batch['scale'][i]))
    to_crop = lambda p: (np.asarray(p, np.float64) - batch['center'][i]) * factor + size / 2
    return (np.asarray(batch['image'][i]), to_crop(predictions[i] - 1),
            to_crop(batch['landmarks'][i]))

  def result(self) -> dict[str, Any]:
    keys = self.rows[0].keys()
    rows = {k: _gather(np.concatenate([r[k] for r in self.rows])) for k in keys}
    keep = rows.pop('mask')
    rows = {k: v[keep] for k, v in rows.items()}
    norms = km.landmark_normalisers(rows['gt'], self.dataset, box_size=rows['box_size'])
    nme = km.nme_per_image(rows['preds'], rows['gt'], norms)
    return km.landmark_metrics(nme)


def landmark_picture(pictures) -> np.ndarray | None:
  """Crops side by side: ground truth (red) and predicted (green) landmarks."""
  if not pictures:
    return None
  import cv2  # pylint: disable=g-import-not-at-top
  tiles = []
  for image, pred, gt in pictures:
    tile = np.ascontiguousarray(image).copy()
    for points, colour in ((gt, (255, 0, 0)), (pred, (0, 255, 0))):
      for x, y in points:
        cv2.circle(tile, (int(round(x)), int(round(y))), 2, colour, -1, cv2.LINE_AA)
    tiles.append(tile)
  return np.concatenate(tiles, axis=1)

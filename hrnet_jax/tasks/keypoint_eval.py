"""The pose evaluator: heatmaps (with the flip test) on device, decoding and scoring on
the host, over the predictions of every process (gathered, so every host scores the same
set). Also the pose pictures and the files eval.py writes."""
from __future__ import annotations

import functools
import json
import os
import tempfile
from typing import Any

import jax
from jax.experimental import multihost_utils
import numpy as np

from hrnet_jax import xla_cpu
from hrnet_jax.data import normalization
from hrnet_jax.data import registry
from hrnet_jax.data import sources
from hrnet_jax.data import stick_figures
from hrnet_jax.evaluation import evaluator
from hrnet_jax.tasks import keypoint_coco as kc
from hrnet_jax.tasks import keypoint_decode as kd
from hrnet_jax.tasks import keypoint_metrics as km
from hrnet_jax.tasks import keypoints as kp_task

RESULTS_FILE = 'keypoints_{split}_results.json'


@functools.lru_cache(maxsize=8)
def make_heatmap_step(model, flip_pairs: tuple, flip_test: bool, shift: bool):
  """jit(variables, images) -> heatmaps, averaged with those of the mirrored input."""

  def step(variables, images):
    x = normalization.normalize(images)
    out = model.apply(variables, x, train=False).astype(jax.numpy.float32)
    if flip_test:
      flipped = model.apply(variables, x[:, :, ::-1], train=False).astype(jax.numpy.float32)
      out = (out + kd.flip_back(flipped, flip_pairs, shift=shift)) * 0.5
    return out

  return xla_cpu.jit(step)


def _gather(rows: np.ndarray) -> np.ndarray:
  """Every process's rows (each process holds the same number), in process order."""
  if jax.process_count() == 1:
    return rows
  return np.asarray(multihost_utils.process_allgather(rows)).reshape(-1, *rows.shape[1:])


class PoseEvaluator:
  """`Evaluator` of the keypoints task."""

  def __init__(self, model, variables, *, config, mesh):
    self.variables, self.mesh, self.config = variables, mesh, config
    self.info = registry.get_dataset_info(config.data.name)
    recipe = kp_task.recipe_from_config(config, self.info)
    k = config.keypoints
    self.step = make_heatmap_step(model, recipe.flip_pairs, bool(k.flip_test),
                                  bool(k.shift_heatmap))
    self.post_process = bool(k.post_process)
    self.mpii = recipe.mpii
    self.rows: list[dict[str, np.ndarray]] = []

  def update(self, batch) -> Any:
    heatmaps = self.step(self.variables, evaluator.to_global(batch['image'], self.mesh))
    local = evaluator.local_rows(heatmaps, self.mesh)
    coords, maxvals = kd.pose_predictions(local, batch['center'], batch['scale'],
                                          post_process=self.post_process)
    row = {'keypoints': np.concatenate([coords, maxvals], -1).astype(np.float64),
           'center': np.asarray(batch['center'], np.float64),
           'scale': np.asarray(batch['scale'], np.float64),
           'score': np.asarray(batch['score'], np.float64),
           'image_id': np.asarray(batch['image_id'], np.int64),
           'mask': evaluator.batch_mask(batch)}
    if self.mpii:
      row.update({k: np.asarray(batch[k], np.float64) for k in ('gt', 'headboxes', 'missing')})
    self.rows.append(row)
    return (local, row['keypoints'])

  def local_predictions(self, outputs) -> np.ndarray:
    return outputs[1]

  def picture(self, batch, predictions: np.ndarray, i: int):
    """(crop, predicted joints in crop pixels (J, 3), ground-truth joints (J, 3))."""
    from hrnet_jax.data import keypoint_transforms as kt  # pylint: disable=g-import-not-at-top
    w, h = batch['image'].shape[2], batch['image'].shape[1]
    matrix = kt.get_affine_transform(batch['center'][i], batch['scale'][i], 0, (w, h))
    pred = predictions[i].copy()
    pred[:, :2] = kt.affine_points(pred[:, :2], matrix)
    return (np.asarray(batch['image'][i]), pred, np.asarray(batch['joints'][i]))

  def _all_rows(self) -> dict[str, np.ndarray]:
    keys = self.rows[0].keys()
    local = {k: np.concatenate([r[k] for r in self.rows]) for k in keys}
    gathered = {k: _gather(v) for k, v in local.items()}
    keep = gathered.pop('mask')
    return {k: v[keep] for k, v in gathered.items()}

  def result(self) -> dict[str, Any]:
    rows = self._all_rows()
    if self.mpii:
      return km.mpii_pckh(rows['keypoints'][..., :2], rows['gt'], rows['headboxes'],
                          rows['missing'])
    k = self.config.keypoints
    sigmas = k.get('oks_sigmas', None) or None
    keep = rows['score'] >= float(k.image_thre)
    results = kc.coco_results(
        rows['image_id'][keep], rows['keypoints'][keep], rows['center'][keep],
        rows['scale'][keep], rows['score'][keep], in_vis_thre=float(k.in_vis_thre),
        oks_thre=float(k.oks_thre), sigmas=sigmas,
        category_id=self._meta().get('category_id', 1))
    path = os.path.join(tempfile.mkdtemp(prefix='hrnet_keypoints_'),
                        RESULTS_FILE.format(split=self.config.data.eval_split))
    kc.write_results(path, results)
    out = kc.evaluate_results(self._meta()['ground_truth'], path, sigmas=sigmas)
    out['results_file'] = path
    return out

  def _meta(self) -> dict:
    if not hasattr(self, '_meta_cache'):
      builder = sources.get_builder(self.info, data_dir=self.config.data.data_dir,
                                    manual_dir=self.config.data.manual_dir, build=False)
      split = self.info.tfds_split(self.config.data.eval_split).split('[')[0]
      self._meta_cache = builder.info.metadata[split]
    return self._meta_cache


def pose_picture(pictures, threshold: float = 0.2) -> np.ndarray | None:
  """Crops side by side, each with ground truth (red) and prediction (green) skeletons."""
  if not pictures:
    return None
  tiles = []
  for image, pred, gt in pictures:
    tile = stick_figures.draw_skeleton(image, gt, colour=(255, 0, 0), threshold=0)
    tiles.append(stick_figures.draw_skeleton(tile, pred, colour=(0, 255, 0),
                                             threshold=threshold))
  return np.concatenate(tiles, axis=1)


def write_report(result, *, workdir: str, writer, step: int) -> dict[str, Any]:
  """TensorBoard scalars and the picture; the results json (COCO) and pictures in the
  workdir. Returns the extra entries of eval_results.json."""
  scalars = {f'eval/{k}': float(v) for k, v in result.items()
             if isinstance(v, (float, int, np.floating)) and k not in ('seconds',)}
  writer.write_scalars(step, scalars)
  extra = {}
  picture = pose_picture(result.get('pictures', []))
  if picture is not None:
    writer.write_images(step, {'eval/skeletons': picture[None]})
    if workdir:
      import cv2  # pylint: disable=g-import-not-at-top
      os.makedirs(os.path.join(workdir, 'pictures'), exist_ok=True)
      path = os.path.join(workdir, 'pictures', f'skeletons_{step:08d}.png')
      cv2.imwrite(path, cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
      extra['picture'] = path
  if result.get('results_file') and workdir and jax.process_index() == 0:
    target = os.path.join(workdir, os.path.basename(result['results_file']))
    with open(result['results_file']) as src, open(target, 'w') as dst:
      json.dump(json.load(src), dst)
    extra['results_file'] = target
  return extra

"""Facial landmarks (WFLW, 300W, COFW, AFLW): the HRNet-Facial-Landmark-Detection recipe
as a task.

Batches: training {'image': uint8 (b, 256, 256, 3) the official crop, 'target': float32
(b, 64, 64, L)}; evaluation adds 'center', 'scale' (x1.25 applied), 'landmarks' (L, 2)
ground truth and 'box_size' (AFLW), + 'mask', 'index'. Loss: MSE over every heatmap
pixel (nn.MSELoss). Evaluation: decode_preds (argmax, quarter offset, +0.5, integer
transform back), NME with the dataset's normalisation, FR@0.08/0.1, AUC@0.1 (not in the
official code); the best checkpoint has the lowest NME.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from hrnet_jax.data import keypoint_samples as ks
from hrnet_jax.data.registry import DatasetInfo
from hrnet_jax.tasks import base


def face_dataset(info: DatasetInfo) -> str:
  """'wflw' | '300w' | 'cofw' | 'aflw' (the TFDS config of face_landmarks)."""
  return info.tfds_name.split('/')[-1]


def recipe_from_config(config, info: DatasetInfo) -> ks.LandmarkRecipe:
  k = config.landmarks
  return ks.LandmarkRecipe(
      image_size=tuple(int(v) for v in k.image_size),
      heatmap_size=tuple(int(v) for v in k.heatmap_size), sigma=float(k.sigma),
      flip_pairs=tuple(tuple(int(i) for i in p) for p in info.flip_pairs),
      scale_factor=float(k.scale_factor), rotation_factor=float(k.rotation_factor),
      flip=bool(k.flip))


@dataclasses.dataclass(frozen=True)
class TrainTransform:
  recipe: ks.LandmarkRecipe

  def __call__(self, example, rng: np.random.Generator, what: str) -> dict[str, np.ndarray]:
    return ks.landmark_sample(example, self.recipe, what, rng)

  def finish_batch(self, batch):
    return batch


@dataclasses.dataclass(frozen=True)
class EvalTransform:
  recipe: ks.LandmarkRecipe
  num_landmarks: int

  def __call__(self, example, what: str) -> dict[str, np.ndarray]:
    out = ks.landmark_sample(example, self.recipe, what)
    del out['target']
    return out

  def padding(self) -> dict[str, np.ndarray]:
    w, h = self.recipe.image_size
    return {'image': np.zeros((h, w, 3), np.uint8), 'center': np.zeros(2, np.float32),
            'scale': np.float32(1), 'landmarks': np.ones((self.num_landmarks, 2), np.float32),
            'box_size': np.float32(1)}


def landmark_mse_loss(heatmaps, target):
  """nn.MSELoss(): the mean over batch, landmarks and heatmap pixels (no 0.5, no weights)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  return jnp.mean((heatmaps.astype(jnp.float32) - target.astype(jnp.float32)) ** 2)


class LandmarksTask(base.Task):
  """Face crop -> one heatmap per landmark; NME (lower is better)."""

  name = 'landmarks'
  score_name = 'NME'
  config_fields = ('landmarks.image_size', 'landmarks.heatmap_size', 'landmarks.sigma',
                   'landmarks.scale_factor', 'landmarks.rotation_factor', 'landmarks.flip',
                   'eval.num_pictures')

  def train_transform(self, config, info: DatasetInfo) -> TrainTransform:
    return TrainTransform(recipe_from_config(config, info))

  def eval_transform(self, config, info: DatasetInfo, source) -> EvalTransform:
    del source
    return EvalTransform(recipe_from_config(config, info), int(info.num_classes))

  def make_loss(self, model, config):
    del model, config
    return lambda heatmaps, batch: landmark_mse_loss(heatmaps, batch['target'])

  def make_evaluator(self, model, variables, *, config, mesh, protocol=None):
    del protocol
    from hrnet_jax.tasks import landmark_eval  # pylint: disable=g-import-not-at-top
    return landmark_eval.LandmarkEvaluator(model, variables, config=config, mesh=mesh)

  def score(self, result) -> float:
    return -float(result['NME'])   # higher is better: the lowest NME is the best

  def summary(self, result, config) -> str:
    del config
    return ('NME {:.2f}%  FR@0.08 {:.2f}%  FR@0.1 {:.2f}%  AUC@0.1 {:.4f}'.format(
        100 * result['NME'], 100 * result['FR@0.08'], 100 * result['FR@0.1'],
        result['AUC@0.1']))

  def picture(self, result, config):
    from hrnet_jax.tasks import landmark_eval  # pylint: disable=g-import-not-at-top
    return landmark_eval.landmark_picture(result.get('pictures', []))

  def report(self, result, *, config, workdir, writer, step):
    del workdir
    print(self.summary(result, config))
    writer.write_scalars(step, {f'eval/{k}': float(result[k])
                                for k in ('NME', 'FR@0.08', 'FR@0.1', 'AUC@0.1')})
    return {}


TASK = LandmarksTask()

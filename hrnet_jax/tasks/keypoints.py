"""Human pose (COCO keypoints, MPII, any COCO-format skeleton): the recipe of
deep-high-resolution-net.pytorch as a task.

Datasets store one example per image; this task trains and evaluates one example per
person (`source_view`: the loader indexes people, as the official JointsDataset does).
Batches: training {'image': uint8 (b, H, W, 3) the augmented person crop, 'target':
float32 (b, H/4, W/4, J) Gaussian heatmaps, 'target_weight': float32 (b, J)};
evaluation {'image', 'center', 'scale', 'score', 'image_id', 'joints' (crop pixels,
for pictures), MPII: 'gt', 'headboxes', 'missing'; + 'mask', 'index'}.
Loss: JointsMSELoss with target weights. Evaluation: flip test with the one-pixel
shift, argmax + quarter offset, back to the image; COCO: rescoring, OKS-NMS, COCOeval
on the results json (score AP); MPII: PCKh@0.5 (score Mean). See docs/keypoints.md.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from hrnet_jax.data import keypoint_datasets
from hrnet_jax.data import keypoint_samples as ks
from hrnet_jax.data.registry import DatasetInfo
from hrnet_jax.tasks import base


def is_mpii(info: DatasetInfo) -> bool:
  return info.tfds_name.split('/')[0] == 'mpii_pose'


def recipe_from_config(config, info: DatasetInfo) -> ks.PoseRecipe:
  """The data recipe of `config.keypoints`, skeleton facts from the registry unless the
  config names them (custom COCO-format skeletons)."""
  k = config.keypoints
  mpii = is_mpii(info)
  skeleton = keypoint_datasets.SKELETONS['mpii' if mpii else 'coco']
  flip_pairs = k.get('flip_pairs', None) or info.flip_pairs
  upper_body = k.get('upper_body', None)
  if upper_body is None:
    upper_body = skeleton.upper_body
  return ks.PoseRecipe(
      image_size=tuple(int(v) for v in k.image_size),
      heatmap_size=tuple(int(v) for v in k.heatmap_size), sigma=float(k.sigma),
      flip_pairs=tuple(tuple(int(i) for i in p) for p in flip_pairs),
      upper_body=tuple(int(i) for i in upper_body),
      scale_factor=float(k.scale_factor), rotation_factor=float(k.rotation_factor),
      flip=bool(k.flip), half_body_prob=float(k.half_body_prob),
      half_body_min_joints=int(k.half_body_min_joints), box_padding=float(k.box_padding),
      mpii=mpii)


def num_joints(config, info: DatasetInfo) -> int:
  return int(config.model.num_classes or info.num_classes)


class PersonView:
  """A per-image data source seen as one entry per person (or detector box).

  Entry i is the raw example of its image with '_person' = the person's row. Counts come
  from the build's metadata, so no image is read to index people.
  """

  def __init__(self, source, counts: np.ndarray):
    from hrnet_jax.data.coco_keypoints import person_index  # pylint: disable=g-import-not-at-top
    self.source = source
    self.index = person_index(counts)
    if len(counts) != len(source):
      raise ValueError(f'{len(counts)} person counts for {len(source)} examples; rebuild '
                       'the dataset')

  @property
  def dataset_info(self):
    return self.source.dataset_info

  def __len__(self) -> int:
    return len(self.index)

  def __getitem__(self, i: int) -> dict[str, Any]:
    example, person = self.index[int(i)]
    out = dict(self.source[int(example)])
    out['_person'] = int(person)
    return out


@dataclasses.dataclass(frozen=True)
class TrainTransform:
  recipe: ks.PoseRecipe
  num_joints: int

  def __call__(self, example, rng: np.random.Generator, what: str) -> dict[str, np.ndarray]:
    image = ks.decode_rgb(example['image'], what)
    every = ks.people(example, self.recipe, self.num_joints)
    person = {k: v[example['_person']] for k, v in every.items()}
    return ks.pose_train_sample(image, person, self.recipe, rng)

  def finish_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return batch


@dataclasses.dataclass(frozen=True)
class EvalTransform:
  recipe: ks.PoseRecipe
  num_joints: int
  use_detections: bool

  def __call__(self, example, what: str) -> dict[str, np.ndarray]:
    image = ks.decode_rgb(example['image'], what)
    every = ks.people(example, self.recipe, self.num_joints, self.use_detections)
    k = example['_person']
    person = {key: v[k] for key, v in every.items()}
    out = ks.pose_eval_sample(image, person, self.recipe, with_target=False)
    out['joints'] = _crop_joints(person, self.recipe)
    if self.recipe.mpii:
      out['gt'] = np.asarray(example['gt'], np.float32).reshape(-1, self.num_joints, 2)[k]
      out['headboxes'] = np.asarray(example['headboxes'], np.float32).reshape(-1, 2, 2)[k]
      out['missing'] = np.asarray(example['missing'], np.float32).reshape(
          -1, self.num_joints)[k]
      out['image_id'] = np.int64(example['index'][k])
    else:
      out['image_id'] = np.int64(example['image_id'])
    return out

  def padding(self) -> dict[str, np.ndarray]:
    w, h = self.recipe.image_size
    j = self.num_joints
    out = {'image': np.zeros((h, w, 3), np.uint8), 'center': np.zeros(2, np.float32),
           'scale': np.ones(2, np.float32), 'score': np.float32(0),
           'joints': np.zeros((j, 3), np.float32), 'image_id': np.int64(-1)}
    if self.recipe.mpii:
      out.update(gt=np.zeros((j, 2), np.float32), headboxes=np.zeros((2, 2), np.float32),
                 missing=np.ones(j, np.float32))
    return out


def _crop_joints(person, recipe: ks.PoseRecipe) -> np.ndarray:
  """Ground-truth joints in the crop's pixels (x, y, visibility) for pictures."""
  from hrnet_jax.data import keypoint_transforms as kt  # pylint: disable=g-import-not-at-top
  matrix = kt.get_affine_transform(person['center'], person['scale'], 0, recipe.image_size)
  xy = kt.affine_points(person['joints'][:, :2], matrix)
  vis = person['visible'][:, 0]
  return np.concatenate([xy * (vis[:, None] > 0), vis[:, None]], axis=1).astype(np.float32)


def joints_mse_loss(heatmaps, target, target_weight):
  """JointsMSELoss(use_target_weight): 0.5 * mean over (B, H, W, J) of
  (w * pred - w * gt)^2; invisible joints count as zeros."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  wide = jnp.promote_types(heatmaps.dtype, jnp.float32)
  w = target_weight.astype(wide)[:, None, None, :]
  diff = heatmaps.astype(wide) * w - target.astype(wide) * w
  return 0.5 * jnp.mean(diff ** 2)


class KeypointsTask(base.Task):
  """Top-down human pose: person crops -> joint heatmaps; COCO AP or MPII PCKh."""

  name = 'keypoints'
  score_name = 'AP'
  config_fields = (
      'keypoints.image_size', 'keypoints.heatmap_size', 'keypoints.sigma',
      'keypoints.scale_factor', 'keypoints.rotation_factor', 'keypoints.flip',
      'keypoints.half_body_prob', 'keypoints.half_body_min_joints', 'keypoints.box_padding',
      'keypoints.use_gt_boxes', 'keypoints.image_thre', 'keypoints.in_vis_thre',
      'keypoints.oks_thre', 'keypoints.flip_test', 'keypoints.shift_heatmap',
      'keypoints.post_process', 'eval.num_pictures')

  # --- data -------------------------------------------------------------------------
  def source_view(self, source, info: DatasetInfo, split: str, config, *, training: bool):
    """The loader's source: one entry per person (training) or per person / detector box
    (evaluation, `keypoints.use_gt_boxes`)."""
    meta = source.dataset_info.metadata[info.tfds_split(split).split('[')[0]]
    detections = not training and not bool(config.keypoints.use_gt_boxes)
    counts = np.asarray(meta['num_detections' if detections else 'num_people'], np.int64)
    if detections and counts.sum() == 0:
      raise base.TaskError(f'{info.name} {split} has no detector boxes (the detection json '
                           'was not in the manual dir when it was built); set '
                           'config.keypoints.use_gt_boxes=True or rebuild with the file')
    return PersonView(source, counts)

  def train_transform(self, config, info: DatasetInfo) -> TrainTransform:
    return TrainTransform(recipe_from_config(config, info), num_joints(config, info))

  def eval_transform(self, config, info: DatasetInfo, source) -> EvalTransform:
    del source
    return EvalTransform(recipe_from_config(config, info), num_joints(config, info),
                         use_detections=not bool(config.keypoints.use_gt_boxes))

  # --- device -----------------------------------------------------------------------
  def make_loss(self, model, config):
    del model, config
    return lambda heatmaps, batch: joints_mse_loss(heatmaps, batch['target'],
                                                   batch['target_weight'])

  def make_evaluator(self, model, variables, *, config, mesh, protocol=None):
    del protocol
    from hrnet_jax.tasks import keypoint_eval  # pylint: disable=g-import-not-at-top
    return keypoint_eval.PoseEvaluator(model, variables, config=config, mesh=mesh)

  # --- results ----------------------------------------------------------------------
  def score(self, result) -> float:
    return float(result['Mean'] if 'Mean' in result and 'AP' not in result else result['AP'])

  def summary(self, result, config) -> str:
    del config
    if 'AP' in result:   # the official names: 'Ap .5', 'AP (M)', ...
      names = (('AP', 'AP'), ('AP50', 'Ap .5'), ('AP75', 'AP .75'), ('APM', 'AP (M)'),
               ('APL', 'AP (L)'), ('AR', 'AR'))
      return '  '.join(f'{short} {result[key]:.3f}' for short, key in names)
    names = (('Head', 'Head'), ('Sho', 'Shoulder'), ('Elb', 'Elbow'), ('Wri', 'Wrist'),
             ('Hip', 'Hip'), ('Knee', 'Knee'), ('Ank', 'Ankle'), ('Mean', 'Mean'),
             ('Mean@0.1', 'Mean@0.1'))
    return 'PCKh ' + ' '.join(f'{short} {result[key]:.1f}' for short, key in names)

  def picture(self, result, config):
    from hrnet_jax.tasks import keypoint_eval  # pylint: disable=g-import-not-at-top
    return keypoint_eval.pose_picture(result.get('pictures', []))

  def report(self, result, *, config, workdir, writer, step):
    from hrnet_jax.tasks import keypoint_eval  # pylint: disable=g-import-not-at-top
    print(self.summary(result, config))
    return keypoint_eval.write_report(result, workdir=workdir, writer=writer, step=step)


TASK = KeypointsTask()

"""Image classification (ImageNet): the HRNet-Image-Classification recipe as a task.

Batches: training {'image': uint8 (b, S, S, 3) random-resized crops (+ flip), 'label':
int32 (b,)}; evaluation {'image': uint8 (b, S, S, 3) resize + centre crop, 'label',
'mask', 'index'} (padding slots have label -1). The loss is the mean softmax
cross-entropy with label smoothing (torch CrossEntropyLoss(label_smoothing=...), optax's
`softmax_cross_entropy` of `smooth_labels`); evaluation counts top-1 and top-5 hits on
device, summed over devices and hosts; the best checkpoint has the highest top-1.

This module is the worked example of docs/tasks.md.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from hrnet_jax.data import sources
from hrnet_jax.data import transforms
from hrnet_jax.data.registry import DatasetInfo
from hrnet_jax.tasks import base


@dataclasses.dataclass(frozen=True)
class TrainTransform:
  """torchvision RandomResizedCrop(size) + RandomHorizontalFlip, on PIL images."""
  info: DatasetInfo
  size: int
  flip: bool

  def __call__(self, example, rng: np.random.Generator, what: str) -> dict[str, np.ndarray]:
    image, label = sources.decode_classification(example, self.info, what)
    image = transforms.train_classification(image, rng, size=self.size, flip=self.flip)
    return {'image': image, 'label': np.int32(label)}

  def finish_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return batch


@dataclasses.dataclass(frozen=True)
class EvalTransform:
  """torchvision Resize(resize) + CenterCrop(crop)."""
  info: DatasetInfo
  resize: int
  crop: int

  def __call__(self, example, what: str) -> dict[str, np.ndarray]:
    image, label = sources.decode_classification(example, self.info, what)
    image = transforms.eval_classification(image, resize=self.resize, crop=self.crop)
    return {'image': image, 'label': np.int32(label)}

  def padding(self) -> dict[str, np.ndarray]:
    return {'image': np.zeros((self.crop, self.crop, 3), np.uint8), 'label': np.int32(-1)}


def classification_loss(logits, labels, *, label_smoothing: float = 0.0):
  """Mean softmax cross-entropy over the batch (torch CrossEntropyLoss, label smoothing)."""
  import jax  # pylint: disable=g-import-not-at-top  (not in the data-loader workers)
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  wide = jnp.promote_types(logits.dtype, jnp.float32)
  targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=wide)
  if label_smoothing:
    targets = optax.smooth_labels(targets, label_smoothing)
  return jnp.mean(optax.softmax_cross_entropy(logits.astype(wide), targets))


class ClassificationTask(base.Task):
  """One label per image; top-1 / top-5 accuracy."""

  name = 'classification'
  score_name = 'top1'
  config_fields = ('data.crop_size', 'data.flip', 'data.eval_resize', 'loss.label_smoothing')

  def train_transform(self, config, info: DatasetInfo) -> TrainTransform:
    return TrainTransform(info=info, size=int(config.data.crop_size[0]),
                          flip=bool(config.data.flip))

  def eval_transform(self, config, info: DatasetInfo, source) -> EvalTransform:
    del source
    return EvalTransform(info=info, resize=int(config.data.get('eval_resize', 256)),
                         crop=int(config.data.crop_size[0]))

  def make_loss(self, model, config):
    del model
    smoothing = float(config.loss.label_smoothing)
    return lambda logits, batch: classification_loss(logits, batch['label'],
                                                     label_smoothing=smoothing)

  def make_evaluator(self, model, variables, *, config, mesh, protocol=None):
    del config, protocol   # one centre crop: no test-time protocol
    from hrnet_jax.tasks import classification_eval  # pylint: disable=g-import-not-at-top
    return classification_eval.ClassificationEvaluator(model, variables, mesh=mesh)

  def summary(self, result, config) -> str:
    del config
    return (f"top-1 {100 * result['top1']:.2f}%  top-5 {100 * result['top5']:.2f}%  "
            f"({result['num_examples']} images)")

  def report(self, result, *, config, workdir, writer, step):
    del workdir
    print(self.summary(result, config))
    writer.write_scalars(step, {'eval/top1': result['top1'], 'eval/top5': result['top5']})
    return {}


TASK = ClassificationTask()

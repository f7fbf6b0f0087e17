"""Segment any images with a checkpoint: colourised predictions and overlays as PNG
(pose and landmark checkpoints: skeletons / landmarks, see docs/keypoints.md).

  python -m hrnet_jax.predict --checkpoint=DIR photo1.jpg photo2.png --out=OUT

`DIR` is a converted official checkpoint (`python -m hrnet_jax.convert`), a model
directory, or a training workdir. Every image is segmented at its own size with the
official whole-image protocol (optionally multi-scale and flip), and
OUT/<name>_pred.png (colours), OUT/<name>_overlay.png and OUT/<name>_labels.png
(class ids) are written.

`load_checkpoint_model` is also what `eval.py` and `hrnet_jax.export` load with.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

import hrnet_jax
from hrnet_jax import checkpointing
from hrnet_jax import cli
from hrnet_jax import xla_cpu
from hrnet_jax.data import palettes
from hrnet_jax.evaluation import inference


class ModelMismatchError(ValueError):
  """A checkpoint does not fit the model it is asked to be."""


def _shape_tree(tree: Any) -> dict[str, tuple[int, ...]]:
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {jax.tree_util.keystr(path): tuple(np.shape(leaf)) for path, leaf in flat}


def check_variables(model, variables: dict[str, Any], where: str) -> None:
  """Raises ModelMismatchError naming the first variables whose names or shapes differ."""
  expected = jax.eval_shape(lambda: model.init(jax.random.key(0),
                                               jnp.zeros((1, 64, 64, 3)), train=False))
  want = _shape_tree({k: expected.get(k, {}) for k in ('params', 'batch_stats')})
  have = _shape_tree({k: variables.get(k, {}) for k in ('params', 'batch_stats')})
  missing = [k for k in want if k not in have]
  extra = [k for k in have if k not in want]
  wrong = [f'{k} {have[k]} (model wants {want[k]})' for k in want
           if k in have and have[k] != want[k]]
  if missing or extra or wrong:
    parts = []
    if wrong:
      parts.append(f'shapes differ: {", ".join(wrong[:3])}')
    if missing:
      parts.append(f'missing: {", ".join(missing[:3])}')
    if extra:
      parts.append(f'unexpected: {", ".join(extra[:3])}')
    raise ModelMismatchError(f'{where} does not fit the model it names '
                             f'({"; ".join(parts)}).')


def load_checkpoint_model(checkpoint: str, *, which: str = 'latest', config=None):
  """(model, variables, metadata) from a checkpoint, checked against `config.model`.

  The architecture comes from the checkpoint's metadata; a config that asks for
  another variant, head or class count is an error (one line, naming both).
  """
  variables, meta = checkpointing.load_model(checkpoint, which=which)
  if config is not None:
    asked = (config.model.name, config.model.head, int(config.model.num_classes))
    have = (meta['model'], meta['head'], int(meta['num_classes']))
    if asked != have:
      raise ModelMismatchError(
          f'checkpoint {checkpoint} holds {have[0]} with head {have[1]!r} and {have[2]} '
          f'classes, but the config asks for {asked[0]} with head {asked[1]!r} and '
          f'{asked[2]} classes; pass the matching --config (or --config.model.name=..., '
          '--config.model.head=..., --config.model.num_classes=...).')
  options = {k: v for k, v in dict(meta.get('options', {})).items() if v is not None}
  if config is not None:
    options.setdefault('dtype', jnp.dtype(config.model.dtype))
  model = hrnet_jax.create_model(meta['model'], head=meta['head'],
                                 num_classes=int(meta['num_classes']), **options)
  check_variables(model, variables, f'checkpoint {checkpoint}')
  return model, variables, meta


def dataset_of(meta: dict[str, Any]) -> str | None:
  """The dataset a checkpoint was trained on, when its metadata says or implies it."""
  if meta.get('dataset'):
    return str(meta['dataset'])
  return 'cityscapes' if int(meta['num_classes']) == 19 else None


def read_image(path: str) -> np.ndarray:
  try:
    with Image.open(path) as im:
      return np.asarray(im.convert('RGB'))
  except FileNotFoundError:
    raise FileNotFoundError(f'{path}: no such image file.') from None
  except OSError as e:
    raise ValueError(f'{path}: not a readable image ({e}).') from None


class Predictor:
  """Class ids for uint8 RGB images of any size; one compilation per distinct size."""

  def __init__(self, model, variables, *, scales: Sequence[float] = (1.0,),
               flip: bool = False, flip_pairs=()):
    self.model = model
    self.variables = jax.device_put(variables)
    self.protocol = inference.Protocol(
        scales=tuple(scales), flip=flip, mode='whole', base_size=None,
        align_corners=inference.resolve_align_corners(model), flip_pairs=tuple(flip_pairs))
    logits_fn = inference.seg_logits_fn(model)
    self._fn = xla_cpu.jit(lambda v, x: jnp.argmax(
        inference.predict_probs(logits_fn, v, x, self.protocol), -1).astype(jnp.int32))

  def __call__(self, image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, np.uint8)
    sizes = [self.protocol.scaled_size(*image.shape[:2], s) for s in self.protocol.scales]
    if min(min(size) for size in sizes) < 32:
      raise ValueError(f'image of {image.shape[0]}x{image.shape[1]} pixels is too small: '
                       'HRNet needs at least 32x32 at every scale.')
    return np.asarray(self._fn(self.variables, image[None]))[0]


def write_prediction(out_dir: str, name: str, image: np.ndarray, labels: np.ndarray,
                     palette: np.ndarray, *, alpha: float = 0.5) -> list[str]:
  os.makedirs(out_dir, exist_ok=True)
  paths = [os.path.join(out_dir, f'{name}_{kind}.png') for kind in ('pred', 'overlay', 'labels')]
  Image.fromarray(palettes.colorize(labels, palette)).save(paths[0])
  Image.fromarray(palettes.overlay(image, labels, palette, alpha=alpha)).save(paths[1])
  Image.fromarray(labels.astype(np.uint8)).save(paths[2])
  return paths


FLAGS = flags.FLAGS


def _define_flags():
  flags.DEFINE_string('checkpoint', None, 'Converted, model or training checkpoint directory.')
  flags.DEFINE_string('out', None, 'Directory for the PNGs.')
  flags.DEFINE_string('which', 'latest',
                      "Checkpoint of a training workdir: 'latest', 'best' or a step number.")
  flags.DEFINE_list('scales', ['1.0'], 'Test scales (relative to each image size).')
  flags.DEFINE_boolean('flip', False, 'Average with the mirrored image (official flip test).')
  flags.DEFINE_string('dataset', None, 'Dataset name for colours (default: from the checkpoint).')
  flags.DEFINE_float('alpha', 0.5, 'Opacity of the colours in the overlay.')
  flags.DEFINE_string('boxes', None, 'Pose / landmark checkpoints: json {image file name: '
                      '[[x, y, w, h], ...]}; images without boxes are one box.')
  flags.DEFINE_list('input_size', None, 'Pose / landmark crop size W,H (default 192,256 '
                    'for pose, 256,256 for landmarks).')
  cli.define_flags(compiles=True)
  flags.mark_flags_as_required(['checkpoint', 'out'])


def _scales(values: Sequence[str]) -> list[float]:
  try:
    scales = [float(s) for s in values]
  except ValueError:
    raise app.UsageError(f'--scales={",".join(values)}: give numbers, e.g. 0.75,1.0,1.25') \
        from None
  if not scales or min(scales) <= 0:
    raise app.UsageError(f'--scales={",".join(values)}: every scale must be > 0')
  return scales


def main(argv: Sequence[str]) -> None:
  images = argv[1:]
  if not images:
    raise app.UsageError('give at least one image: python -m hrnet_jax.predict '
                         '--checkpoint=DIR IMAGE... --out=DIR')
  scales = _scales(FLAGS.scales)
  cli.writable_dir(FLAGS.out, '--out')
  try:
    model, variables, meta = load_checkpoint_model(FLAGS.checkpoint, which=FLAGS.which)
  except (checkpointing.CheckpointError, ModelMismatchError) as e:
    sys.exit(f'error: {e}')
  if meta['head'] in ('pose', 'landmark'):   # skeletons / landmarks (docs/keypoints.md)
    from hrnet_jax.tasks import keypoint_predict  # pylint: disable=g-import-not-at-top
    size = tuple(int(v) for v in FLAGS.input_size) if FLAGS.input_size else None
    try:
      written = keypoint_predict.predict_files(model, variables, meta['head'], images,
                                               FLAGS.out, boxes_file=FLAGS.boxes,
                                               image_size=size)
    except (FileNotFoundError, ValueError) as e:
      sys.exit(f'error: {e}')
    for path, picture in zip(images, written):
      print(f'{path} -> {picture}')
    return
  if meta['head'] not in ('seg', 'ocr'):
    sys.exit(f"error: {FLAGS.checkpoint} is a {meta['head']!r} model; predict segments "
             "images and needs a 'seg' or 'ocr' checkpoint.")
  dataset = FLAGS.dataset or dataset_of(meta)
  palette = palettes.get_palette(dataset, int(meta['num_classes']))
  flip_pairs = inference.dataset_flip_pairs(dataset) if dataset else ()
  predictor = Predictor(model, variables, scales=scales,
                        flip=FLAGS.flip, flip_pairs=flip_pairs)
  for path in images:
    try:
      image = read_image(path)
      labels = predictor(image)
    except (FileNotFoundError, ValueError) as e:
      sys.exit(f'error: {e}')
    name = os.path.splitext(os.path.basename(path))[0]
    written = write_prediction(FLAGS.out, name, image, labels, palette, alpha=FLAGS.alpha)
    print(f'{path}: {image.shape[1]}x{image.shape[0]} -> {", ".join(written)}')


if __name__ == '__main__':
  _define_flags()
  cli.run(main)

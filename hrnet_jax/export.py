"""Serialize the inference function with `jax.export`: run HRNet without this package.

  python -m hrnet_jax.export --checkpoint=DIR --out=model.jaxexport --height=1024 --width=2048

The file holds a StableHLO module (weights embedded as constants) of

    f(images: uint8[b, H, W, 3]) -> {'logits': float32[b, ceil(H/4), ceil(W/4), C],
                                     'labels': int32[b, H, W]}

with a symbolic batch size `b`: `logits` is exactly `model.apply(variables,
normalize(images), train=False)` (OCR: the final logits) and `labels` the argmax of
the official whole-image protocol (logits upsampled to the input size, optionally
flip-averaged). Load it anywhere with only jax installed:

    exported = jax.export.deserialize(open('model.jaxexport', 'rb').read())
    out = exported.call(images)
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

from absl import app
from absl import flags
import jax
import jax.numpy as jnp

from hrnet_jax import checkpointing
from hrnet_jax import cli
from hrnet_jax import predict
from hrnet_jax.evaluation import inference


def inference_function(model, variables, *, flip: bool = False, flip_pairs=()):
  """images uint8 (b, H, W, 3) -> {'logits', 'labels'}, the variables closed over."""
  protocol = inference.Protocol(scales=(1.0,), flip=flip, mode='whole', base_size=None,
                                align_corners=inference.resolve_align_corners(model),
                                flip_pairs=tuple(flip_pairs))
  logits_fn = inference.seg_logits_fn(model)

  def fn(images):
    logits = logits_fn(variables, inference.normalize(images))
    probs = inference.predict_probs(logits_fn, variables, images, protocol)
    return {'logits': logits, 'labels': jnp.argmax(probs, -1).astype(jnp.int32)}

  return fn


def export_model(model, variables, *, height: int, width: int, flip: bool = False,
                 flip_pairs=()) -> jax.export.Exported:
  """The exported inference function for (b, height, width, 3) uint8 batches, any b."""
  if min(height, width) < 32:
    raise ValueError(f'--height/--width {height}x{width}: HRNet needs at least 32x32.')
  fn = inference_function(model, jax.device_get(variables), flip=flip, flip_pairs=flip_pairs)
  (batch,) = jax.export.symbolic_shape('b')
  spec = jax.ShapeDtypeStruct((batch, height, width, 3), jnp.uint8)
  return jax.export.export(jax.jit(fn))(spec)


def load(path: str) -> jax.export.Exported:
  """Reads a file written by this module (equivalent to jax.export.deserialize)."""
  with open(path, 'rb') as f:
    return jax.export.deserialize(bytearray(f.read()))


FLAGS = flags.FLAGS


def _define_flags():
  flags.DEFINE_string('checkpoint', None, 'Converted, model or training checkpoint directory.')
  flags.DEFINE_string('out', None, 'File to write the serialized function to.')
  flags.DEFINE_string('which', 'latest',
                      "Checkpoint of a training workdir: 'latest', 'best' or a step number.")
  flags.DEFINE_integer('height', 1024, 'Input height the function accepts.')
  flags.DEFINE_integer('width', 2048, 'Input width the function accepts.')
  flags.DEFINE_boolean('flip', False, 'Flip-average the labels (official flip test).')
  cli.define_flags(compiles=True)
  flags.mark_flags_as_required(['checkpoint', 'out'])


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if min(FLAGS.height, FLAGS.width) < 32:
    raise app.UsageError(f'--height/--width {FLAGS.height}x{FLAGS.width}: HRNet needs at '
                         'least 32x32.')
  if os.path.isdir(FLAGS.out):
    raise IsADirectoryError(21, 'is a directory; --out names the file to write', FLAGS.out)
  cli.writable_dir(os.path.dirname(os.path.abspath(FLAGS.out)), '--out\'s directory')
  try:
    model, variables, meta = predict.load_checkpoint_model(FLAGS.checkpoint, which=FLAGS.which)
  except (checkpointing.CheckpointError, predict.ModelMismatchError) as e:
    sys.exit(f'error: {e}')
  if meta['head'] not in ('seg', 'ocr'):
    sys.exit(f"error: {FLAGS.checkpoint} is a {meta['head']!r} model; export handles "
             "'seg' and 'ocr' checkpoints.")
  dataset = predict.dataset_of(meta)
  flip_pairs = inference.dataset_flip_pairs(dataset) if dataset else ()
  exported = export_model(model, variables, height=FLAGS.height, width=FLAGS.width,
                          flip=FLAGS.flip, flip_pairs=flip_pairs)
  with open(FLAGS.out, 'wb') as f:
    f.write(exported.serialize())
  with open(FLAGS.out + '.json', 'w') as f:
    json.dump(dict(meta, input_shape=['b', FLAGS.height, FLAGS.width, 3],
                   input_dtype='uint8', outputs=['logits', 'labels'], flip=FLAGS.flip),
              f, indent=2, default=str)
  print(f'wrote {FLAGS.out} ({os.path.getsize(FLAGS.out) / 2**20:.1f} MiB): uint8[b, '
        f'{FLAGS.height}, {FLAGS.width}, 3] -> logits, labels')


if __name__ == '__main__':
  _define_flags()
  cli.run(main)

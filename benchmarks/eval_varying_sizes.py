"""Evaluation of images of many distinct sizes: compilations and wall time, per path.

Runs the segmentation evaluator over `--sizes` random images of distinct sizes (within
an `--pad` bucket) twice: the fixed-shape path (`eval.size_buckets = True`, the
default) and the true-size path (`False`, one compilation per size), on one CPU device
and without the persistent compilation cache, and prints one markdown row per path:
programs lowered (= compiled), wall seconds (compiles included), then whether the two
confusion matrices are identical and how many pixels the two paths classify differently
(none but exact ties with windows; near the border with `--mode=whole`).

    python benchmarks/eval_varying_sizes.py                       # tiny two-conv model
    python benchmarks/eval_varying_sizes.py --model=hrnet_w18_small_v1 --sizes=6 \
        --pad=128 --min_size=48 --crop=64 [--mode=whole]
"""
import argparse
import os
import sys
import time

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # pylint: disable=g-import-not-at-top
import jax
import jax.numpy as jnp
import numpy as np

jax.config.update('jax_enable_compilation_cache', False)

import hrnet_jax  # pylint: disable=g-import-not-at-top
from configs import default
from hrnet_jax.evaluation import inference
from hrnet_jax.tasks import segmentation_eval
from hrnet_jax.training import sharding


class TinySeg(nn.Module):
  """Two stride-2 convs: logits at a quarter of the input, like the HRNet seg head."""
  num_classes: int

  @nn.compact
  def __call__(self, x, train=False):
    pad = ((1, 1), (1, 1))
    x = nn.relu(nn.Conv(8, (3, 3), strides=2, padding=pad)(x))
    return nn.Conv(self.num_classes, (3, 3), strides=2, padding=pad)(x)


def run(model, variables, protocol, examples, *, pad, num_classes, buckets):
  config = default.get_config()
  config.model.num_classes = num_classes
  config.data.eval_pad_size = pad
  config.eval.size_buckets = buckets
  lowered = []

  def listener(event, duration, **kwargs):
    del duration
    if event == '/jax/core/compile/jaxpr_to_mlir_module_duration':
      lowered.append(kwargs.get('fun_name'))

  mesh = sharding.make_mesh(devices=jax.devices()[:1])
  jax.monitoring.register_event_duration_secs_listener(listener)
  start = time.perf_counter()
  ev = segmentation_eval.SegmentationEvaluator(model, variables, config=config, mesh=mesh,
                                               protocol=protocol)
  preds = []
  for image, label in examples:
    h, w = label.shape
    batch = {'image': np.zeros((1,) + pad + (3,), np.uint8),
             'label': np.full((1,) + pad, 255, np.int32), 'mask': np.ones(1, bool),
             'height': np.array([h]), 'width': np.array([w])}
    batch['image'][0, :h, :w], batch['label'][0, :h, :w] = image, label
    preds.append(np.asarray(ev.update(batch))[0, :h, :w])
  matrix = ev.result()['confusion_matrix']
  seconds = time.perf_counter() - start
  jax.monitoring.unregister_event_duration_listener(listener)
  return matrix, preds, len(lowered), seconds


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--model', default='tiny', help="'tiny' or an HRNet name")
  parser.add_argument('--sizes', type=int, default=40)
  parser.add_argument('--pad', type=int, default=64, help='square eval_pad_size')
  parser.add_argument('--min_size', type=int, default=16,
                      help='smallest image side (HRNet needs >= 32 at every scale)')
  parser.add_argument('--crop', type=int, default=24)
  parser.add_argument('--scales', default='0.75,1.25')
  parser.add_argument('--layout', default='pad', choices=('pad', 'border'))
  parser.add_argument('--mode', default='sliding', choices=('sliding', 'whole'))
  parser.add_argument('--num_classes', type=int, default=4)
  args = parser.parse_args()
  c = args.num_classes
  if args.model == 'tiny':
    model = TinySeg(c)
  else:
    model = hrnet_jax.create_model(args.model, head='seg', num_classes=c)
  variables = jax.jit(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)),
                                         train=False))()
  protocol = inference.Protocol(
      scales=tuple(float(s) for s in args.scales.split(',')), flip=True, mode=args.mode,
      crop_size=(args.crop, args.crop), window_layout=args.layout, align_corners=True)
  rng = np.random.default_rng(0)
  sizes = set()
  while len(sizes) < args.sizes:
    sizes.add(tuple(int(x) for x in rng.integers(args.min_size, args.pad + 1, 2)))
  examples = [(rng.integers(0, 256, s + (3,), dtype=np.uint8),
               rng.integers(0, c, s).astype(np.int32)) for s in sorted(sizes)]
  pad = (args.pad, args.pad)
  print(f'| path | model | images (distinct sizes) | scales | programs compiled | '
        f'wall s |\n|---|---|---|---|---|---|')
  results = {}
  for buckets in (True, False):
    matrix, preds, programs, seconds = run(model, variables, protocol, examples, pad=pad,
                                           num_classes=c, buckets=buckets)
    results[buckets] = matrix, preds
    name = 'fixed shapes (size_buckets)' if buckets else 'true size (before)'
    print(f'| {name} | {args.model} | {len(examples)} | {args.scales} | {programs} | '
          f'{seconds:.1f} |')
  same = np.array_equal(results[True][0], results[False][0])
  differ = sum(int((a != b).sum()) for a, b in zip(results[True][1], results[False][1]))
  pixels = sum(p.size for p in results[True][1])
  print(f'\nconfusion matrices identical: {same}; pixels classified differently: '
        f'{differ} of {pixels}')


if __name__ == '__main__':
  main()

"""Cityscapes training input: our grain pipeline vs a plain single-process OpenCV loop.

Both do the same work per example: decode a 1024x2048 RGB PNG and its labelId PNG, map
labelIds to trainIds, then the official recipe (multi-scale long-side resize, image
bilinear + label nearest, pad, random 512x1024 crop, flip) to a uint8 image and int32
label. The baseline reads the extracted files with cv2.imread as the official
`Cityscapes` dataset does; ours reads the TFDS (ArrayRecord) build of the same zips.
Images are generated at full size with photo-like shading and noise, so their PNGs are
~2.5 MB, as the real ones, and decoding costs what it costs there.

    python benchmarks/input_pipeline.py [--num_images 24] [--workers 1,2]

Prints a table of images/s and the ratio to the baseline, one row per worker count.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import zipfile

import sys

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _baseline(files, lut, *, crop, base_size, scale_factor, num_images, seed):
  """The official recipe, written plainly: one process, one image at a time."""
  rng = np.random.default_rng(seed)
  start = time.perf_counter()
  for i in range(num_images):
    image_path, label_path = files[i % len(files)]
    image = cv2.imread(image_path, cv2.IMREAD_COLOR)
    label = lut[cv2.imread(label_path, cv2.IMREAD_GRAYSCALE)]
    scale = 0.5 + rng.integers(0, scale_factor + 1) / 10.0
    long_size = int(base_size * scale + 0.5)
    h, w = image.shape[:2]
    new_h, new_w = ((long_size, int(w * long_size / h + 0.5)) if h > w else
                    (int(h * long_size / w + 0.5), long_size))
    image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    label = cv2.resize(label, (new_w, new_h), interpolation=cv2.INTER_NEAREST)
    pad_h, pad_w = max(crop[0] - new_h, 0), max(crop[1] - new_w, 0)
    if pad_h or pad_w:
      image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=0)
      label = cv2.copyMakeBorder(label, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=255)
    x = rng.integers(0, image.shape[1] - crop[1] + 1)
    y = rng.integers(0, image.shape[0] - crop[0] + 1)
    image = image[y:y + crop[0], x:x + crop[1], ::-1]      # BGR -> RGB
    label = label[y:y + crop[0], x:x + crop[1]]
    if rng.integers(0, 2):
      image, label = image[:, ::-1], label[:, ::-1]
    image, label = np.ascontiguousarray(image), label.astype(np.int32)
  return num_images / (time.perf_counter() - start)


def _ours(config, num_workers, num_batches):
  from hrnet_jax import data  # pylint: disable=g-import-not-at-top
  config.data.num_workers = num_workers
  loader = data.make_train_loader(config)
  batch = next(loader)          # worker start-up and the first batch are not timed
  start = time.perf_counter()
  for _ in range(num_batches):
    batch = next(loader)
  rate = num_batches * batch['image'].shape[0] / (time.perf_counter() - start)
  loader.close()
  return rate


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--num_images', type=int, default=24, help='distinct fake images')
  parser.add_argument('--batch', type=int, default=4)
  parser.add_argument('--batches', type=int, default=12, help='timed batches per run')
  parser.add_argument('--workers', default='1,2', help='grain worker counts to run')
  parser.add_argument('--workdir', default=None, help='keep the fake data here')
  parser.add_argument('--json', default=None, help='also write the results here')
  args = parser.parse_args()

  from configs import default  # pylint: disable=g-import-not-at-top
  from hrnet_jax.data import fakes, registry, sources  # pylint: disable=g-import-not-at-top
  workdir = args.workdir or tempfile.mkdtemp(prefix='hrnet-input-bench-')
  manual = os.path.join(workdir, 'manual')
  t = time.perf_counter()
  if not os.path.exists(os.path.join(manual, 'gtFine_trainvaltest.zip')):
    fakes.write_fake_cityscapes(
        manual, images_per_split={'train': args.num_images, 'val': 1, 'test': 1},
        textured=True, block=128)
  config = default.get_config()
  config.data.data_dir = os.path.join(workdir, 'tfds')
  config.data.manual_dir = manual
  config.global_batch_size = args.batch
  sources.get_builder(registry.get_dataset_info('cityscapes'),
                      data_dir=config.data.data_dir, manual_dir=manual)
  extracted = os.path.join(workdir, 'extracted')
  if not os.path.isdir(extracted):
    for name in ('leftImg8bit_trainvaltest.zip', 'gtFine_trainvaltest.zip'):
      with zipfile.ZipFile(os.path.join(manual, name)) as z:
        z.extractall(extracted)
  print(f'fake data ready in {time.perf_counter() - t:.0f}s: {workdir}')
  files = []
  for root, _, names in sorted(os.walk(os.path.join(extracted, 'leftImg8bit', 'train'))):
    for name in sorted(names):
      image_id = name[:-len('_leftImg8bit.png')]
      city = os.path.basename(root)
      files.append((os.path.join(root, name),
                    os.path.join(extracted, 'gtFine', 'train', city,
                                 f'{image_id}_gtFine_labelIds.png')))
  png_mb = np.mean([os.path.getsize(f[0]) for f in files]) / 2**20
  lut = registry.get_dataset_info('cityscapes').label_to_train_id
  n = args.batch * args.batches
  recipe = dict(crop=tuple(config.data.crop_size), base_size=config.data.base_size,
                scale_factor=config.data.scale_factor)
  _baseline(files, lut, num_images=2, seed=1, **recipe)     # warm the file cache
  rows = []
  baseline = _baseline(files, lut, num_images=n, seed=0, **recipe)
  rows.append(('OpenCV loop, 1 process (baseline)', baseline))
  for workers in [int(w) for w in args.workers.split(',')]:
    rate = _ours(config, workers, args.batches)
    label = (f'grain, {workers} worker process{"es" if workers > 1 else ""}' if workers
             else 'grain, in-process (2 threads)')
    rows.append((label, rate))
  load = os.getloadavg()
  print(f'\nCityscapes train input, 1024x2048 PNG ({png_mb:.1f} MB) -> 512x1024 crops, '
        f'{os.cpu_count()} CPUs, load average {load[0]:.1f}')
  print(f'| pipeline | images/s | vs baseline |\n|---|---|---|')
  for label, rate in rows:
    print(f'| {label} | {rate:.2f} | {rate / baseline:.2f}x |')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump({'rows': rows, 'png_mb': png_mb, 'cpus': os.cpu_count(),
                 'load_average': load}, f, indent=2)
  if not args.workdir:
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == '__main__':
  main()

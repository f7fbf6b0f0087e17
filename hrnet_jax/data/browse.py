"""See what the network will see: augmented training samples and class frequencies.

    python -m hrnet_jax.data.browse --config=configs/folder_seg.py \
        --config.data.root=/path/to/my_data --out=/tmp/browse

writes to --out:
  samples.png          a grid of training samples exactly as the train loader makes them
                       (crop, scale, flip of the config), each as image | mask overlay
                       (class colours of the dataset's palette; ignore pixels unpainted)
  class_frequency.png  pixels per class per split as a bar chart (share of the split's
                       labelled pixels; the ignore share is printed in the legend)
  class_frequency.json the counts behind the chart

For classification datasets the grid captions each sample with its class and the chart
counts images per class. The same idea as mmsegmentation's browse_dataset and
analyze_logs tools, drawn with Pillow.
"""
from __future__ import annotations

import json
import os
import sys

from absl import app
from absl import flags
from absl import logging
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from hrnet_jax.data import palettes
from hrnet_jax.data import registry
from hrnet_jax.data import sources
from hrnet_jax.data.errors import DataError

_SPLIT_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44))


def sample_grid(config, info, *, num_samples: int, columns: int) -> np.ndarray:
  """Training samples of the config's train loader (seed, transforms) in a grid."""
  from hrnet_jax import data  # pylint: disable=g-import-not-at-top
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.global_batch_size = num_samples
    config.data.num_workers = 0
  loader = data.make_train_loader(config)
  try:
    batch = next(loader)
  finally:
    loader.close()
  tiles = []
  for i in range(num_samples):
    image = np.asarray(batch['image'][i], np.uint8)
    label = np.asarray(batch['label'][i])
    if label.ndim == 2:
      tiles.append(palettes.side_by_side(
          image, palettes.overlay(image, label, info.palette,
                                  ignore_label=info.ignore_label), gap=2))
    else:
      tiles.append(_caption(image, info.class_names[int(label)] if info.class_names
                            else str(int(label))))
  rows = [palettes.side_by_side(*tiles[r:r + columns], gap=8)
          for r in range(0, len(tiles), columns)]
  return palettes.stack_rows(rows, gap=8)


def _font(size: int):
  try:
    return ImageFont.load_default(size=size)
  except TypeError:   # Pillow < 10.1: one bitmap size
    return ImageFont.load_default()


def _caption(image: np.ndarray, text: str) -> np.ndarray:
  pil = Image.fromarray(image)
  draw = ImageDraw.Draw(pil)
  draw.rectangle((0, 0, pil.width, 14), fill=(0, 0, 0))
  draw.text((2, 1), text, fill=(255, 255, 255), font=_font(11))
  return np.asarray(pil)


def class_counts(config, info) -> dict[str, list[int]]:
  """split -> pixels (segmentation; index 255 = ignore) or images per class value."""
  counts = {}
  for split, _ in info.splits:
    source = sources.open_split(info, split, data_dir=config.data.data_dir,
                                manual_dir=config.data.manual_dir)
    total = np.zeros(256, np.int64)
    for i in range(len(source)):
      example = source[i]
      what = sources.example_id(example, info, split, i)
      if info.task == 'segmentation':
        _, label = sources.decode_segmentation(example, info, what)
        total += np.bincount(label.ravel(), minlength=256)
      else:
        total[int(example[info.label_key])] += 1
    counts[split] = total.tolist()
  return counts


def frequency_chart(counts: dict[str, list[int]], info, *, unit: str) -> Image.Image:
  """Horizontal bars: one row per class, one bar per split (share of labelled units)."""
  names = list(info.class_names) or [str(i) for i in range(info.num_classes)]
  splits = list(counts)
  font, bar, pad, label_w, plot_w = _font(12), 9, 6, 150, 420
  row_h = bar * len(splits) + pad
  width, height = label_w + plot_w + 110, 40 + row_h * len(names) + 20 * len(splits) + 20
  pil = Image.new('RGB', (width, height), (255, 255, 255))
  draw = ImageDraw.Draw(pil)
  shares = {}
  for split in splits:
    c = np.asarray(counts[split][:len(names)], np.float64)
    shares[split] = c / max(c.sum(), 1.0)
  top = max(max(s.max() for s in shares.values()), 1e-9)
  title = info.user_folder.root if info.user_folder else info.name
  draw.text((8, 8), f'{title}: {unit} per class, share of each split', fill=(0, 0, 0),
            font=font)
  for k, name in enumerate(names):
    y = 32 + k * row_h
    colour = tuple(int(v) for v in info.palette[k]) if info.palette is not None else (0, 0, 0)
    draw.rectangle((8, y + 2, 18, y + 12), fill=colour, outline=(0, 0, 0))
    draw.text((24, y), name[:22], fill=(0, 0, 0), font=font)
    for j, split in enumerate(splits):
      share = shares[split][k]
      x1 = label_w + int(plot_w * share / top)
      yy = y + j * bar
      draw.rectangle((label_w, yy, max(x1, label_w + 1), yy + bar - 2),
                     fill=_SPLIT_COLOURS[j % len(_SPLIT_COLOURS)])
      draw.text((x1 + 4, yy - 2), f'{100 * share:.2f}%', fill=(60, 60, 60), font=_font(9))
  y = 40 + row_h * len(names)
  for j, split in enumerate(splits):
    c = np.asarray(counts[split], np.int64)
    labelled = int(c[:len(names)].sum())
    ignored = int(c[info.ignore_label]) if unit == 'pixels' else 0
    extra = (f', ignore {100 * ignored / max(labelled + ignored, 1):.1f}%'
             if unit == 'pixels' else '')
    draw.rectangle((8, y + 20 * j, 28, y + 20 * j + 12),
                   fill=_SPLIT_COLOURS[j % len(_SPLIT_COLOURS)])
    draw.text((34, y + 20 * j), f'{split}: {labelled:,} {unit} labelled{extra}',
              fill=(0, 0, 0), font=font)
  return pil


def browse(config, out_dir: str, *, num_samples: int = 16, columns: int = 4) -> list[str]:
  """Writes the pictures (and counts) to out_dir; returns their paths."""
  info = registry.dataset_info(config.data)
  os.makedirs(out_dir, exist_ok=True)
  grid = sample_grid(config, info, num_samples=num_samples, columns=columns)
  paths = [os.path.join(out_dir, 'samples.png'), os.path.join(out_dir, 'class_frequency.png'),
           os.path.join(out_dir, 'class_frequency.json')]
  Image.fromarray(grid).save(paths[0])
  unit = 'pixels' if info.task == 'segmentation' else 'images'
  counts = class_counts(config, info)
  frequency_chart(counts, info, unit=unit).save(paths[1])
  names = list(info.class_names) or [str(i) for i in range(info.num_classes)]
  with open(paths[2], 'w') as f:
    json.dump({'dataset': info.name, 'unit': unit, 'classes': names,
               'counts': {s: dict(zip(names, c[:len(names)])) for s, c in counts.items()},
               'ignored': {s: c[info.ignore_label] for s, c in counts.items()}
               if unit == 'pixels' else {}}, f, indent=1)
  return paths


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  try:
    for path in browse(flags.FLAGS.config, flags.FLAGS.out,
                       num_samples=flags.FLAGS.num_samples, columns=flags.FLAGS.columns):
      print(path)
  except DataError as e:
    sys.exit(f'error: {e}')


if __name__ == '__main__':
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file('config', None, 'Training config file.', lock_config=True)
  flags.DEFINE_string('out', None, 'Directory for the pictures.')
  flags.DEFINE_integer('num_samples', 16, 'Training samples in the grid.')
  flags.DEFINE_integer('columns', 4, 'Samples per row of the grid.')
  from hrnet_jax import cli  # pylint: disable=g-import-not-at-top
  cli.define_flags()   # --debug; errors (OS ones too) as one line, as every CLI
  flags.mark_flags_as_required(['config', 'out'])
  logging.set_verbosity(logging.WARNING)
  cli.run(main)

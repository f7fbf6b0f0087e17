"""A user-style folder of street scenes (JPEG images, PNG masks, classes.txt) for tests
and the worked example of docs/custom_data.md.

    python -m hrnet_jax.data.folder_fakes --out=/tmp/streets --num_images=60

The scenes are those of `hrnet_synthetic` (hrnet_jax/data/scenes.py), written the way a
user's files look: `images/{train,val}/*.jpg` and `masks/{train,val}/*.png` (layout
'dirs'), the same files with `train.lst`/`val.lst` list files (layout 'lists'), and a
class file naming the 19 Cityscapes classes with their colours.
"""
from __future__ import annotations

import os

import cv2
import numpy as np

from hrnet_jax.data import registry
from hrnet_jax.data import scenes

_SEED = 20_251_201


def class_file_text(*, colours: bool = True) -> str:
  lines = ['# the 19 Cityscapes classes; mask value i = class i, 255 = void']
  for name, rgb in zip(registry.CITYSCAPES_CLASSES, registry.CITYSCAPES_PALETTE):
    lines.append(f'{name:15s}: {rgb[0]} {rgb[1]} {rgb[2]}' if colours else name)
  return '\n'.join(lines) + '\n'


def write_scene_folder(root: str, *, num_images: int = 60, num_val: int | None = None,
                       height: int = 256, width: int = 512, layout: str = 'dirs',
                       jpeg_quality: int = 95) -> dict[str, list[str]]:
  """Writes the folder; returns split -> stems. layout: 'dirs' or 'lists'."""
  num_val = num_images // 5 if num_val is None else num_val
  split_of = ['val' if i < num_val else 'train' for i in range(num_images)]
  stems: dict[str, list[str]] = {'train': [], 'val': []}
  lists: dict[str, list[str]] = {'train': [], 'val': []}
  for i, split in enumerate(split_of):
    image, label = scenes.render_scene(np.random.default_rng([_SEED, i]), height, width)
    stem = f'street_{i:04d}'
    sub = f'{split}/' if layout == 'dirs' else 'all/'
    image_rel, mask_rel = f'images/{sub}{stem}.jpg', f'masks/{sub}{stem}.png'
    for rel in (image_rel, mask_rel):
      os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
    cv2.imwrite(os.path.join(root, image_rel), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    cv2.imwrite(os.path.join(root, mask_rel), label)
    stems[split].append(stem)
    lists[split].append(f'{image_rel} {mask_rel}')
  if layout == 'lists':
    for split, lines in lists.items():
      with open(os.path.join(root, f'{split}.lst'), 'w') as f:
        f.write('\n'.join(sorted(lines)) + '\n')
  elif layout != 'dirs':
    raise ValueError(f'layout {layout!r}: use "dirs" or "lists"')
  with open(os.path.join(root, 'classes.txt'), 'w') as f:
    f.write(class_file_text())
  return stems


if __name__ == '__main__':
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string('out', None, 'Folder to write.', required=True)
  flags.DEFINE_integer('num_images', 60, 'Scenes in all (a fifth go to val).')
  flags.DEFINE_integer('height', 256, 'Image height.')
  flags.DEFINE_integer('width', 512, 'Image width.')
  flags.DEFINE_enum('layout', 'dirs', ['dirs', 'lists'], 'Split folders or list files.')

  def _main(argv):
    del argv
    f = flags.FLAGS
    stems = write_scene_folder(f.out, num_images=f.num_images, height=f.height,
                               width=f.width, layout=f.layout)
    print(f'{f.out}: ' + ', '.join(f'{s} {len(v)}' for s, v in stems.items()) + ' images')

  app.run(_main)

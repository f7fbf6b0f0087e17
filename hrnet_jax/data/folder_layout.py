"""Where the images and masks of a user's segmentation folder are, split by split.

Layouts, tried in this order (DIR = config.data.root):

  list files   DIR/train.lst, DIR/val.lst (, DIR/test.lst): "image mask" per line,
               paths relative to DIR (the official HRNet list format; a tab separates
               paths that contain spaces)
  split dirs   DIR/images/{train,val,test}/... with DIR/masks/{train,val,test}/...
               or DIR/{train,val,test}/images/... with DIR/{train,val,test}/masks/...
  flat         DIR/images/... with DIR/masks/...: every image whose stem hashes below
               config.data.val_percent goes to validation (stable when files are added)

Images and masks pair up by their path below images/ and masks/ without the extension.
Without a val split, one is carved from train the same way as in the flat layout.
Scanning only lists and stats files (no decoding): `fingerprint` names a build of the
folder, so that a changed folder is built again and two folders never share a build.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import zlib

from hrnet_jax.data.folder_classes import ClassTable

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
# Our split names -> the folder / list-file names that mean them.
SPLIT_ALIASES = {'train': ('train', 'training'), 'validation': ('val', 'validation'),
                 'test': ('test', 'testing')}
LAYOUT_VERSION = 1   # part of the fingerprint: bump when scanning or conversion changes
_MAX_NAMED = 4       # files named per problem line


@dataclasses.dataclass(frozen=True)
class Pair:
  """One example: an image and its mask (paths relative to the root)."""
  key: str      # the image's path without extension: the example's image_id
  image: str
  mask: str


@dataclasses.dataclass
class Layout:
  """The examples of each split, and what is wrong with the folder's structure."""
  root: str
  kind: str
  splits: dict[str, list[Pair]]
  problems: list[str]


def name_some(paths, total: int | None = None) -> str:
  """'a.png, b.png, c.png and 7 more' for one-line messages."""
  paths = list(paths)
  total = len(paths) if total is None else total
  shown = ', '.join(paths[:_MAX_NAMED])
  return shown + (f' and {total - _MAX_NAMED} more' if total > _MAX_NAMED else '')


def _walk(root: str, sub: str) -> dict[str, list[str]]:
  """key (relative path without extension) -> image files below root/sub."""
  found: dict[str, list[str]] = {}
  base = os.path.join(root, sub)
  for dirpath, dirnames, filenames in os.walk(base):
    dirnames[:] = sorted(d for d in dirnames if not d.startswith('.'))
    for name in sorted(filenames):
      stem, ext = os.path.splitext(name)
      if name.startswith('.') or ext.lower() not in IMAGE_EXTENSIONS:
        continue
      rel = os.path.relpath(os.path.join(dirpath, name), base)
      key = os.path.splitext(rel)[0].replace(os.sep, '/')
      found.setdefault(key, []).append(os.path.join(sub, rel).replace(os.sep, '/'))
  return found


def _pair_dirs(root: str, image_dir: str, mask_dir: str, split: str,
               problems: list[str]) -> list[Pair]:
  images, masks = _walk(root, image_dir), _walk(root, mask_dir)
  for what, found in (('images', images), ('masks', masks)):
    twice = [' / '.join(v) for v in found.values() if len(v) > 1]
    if twice:
      problems.append(f'{split}: {len(twice)} {what} share a name with another extension '
                      f'({name_some(twice)}); keep one file per name')
  lonely = sorted(set(images) - set(masks))
  if lonely:
    problems.append(
        f'{split}: {len(lonely)} images have no mask in {root}/{mask_dir} '
        f'({name_some(images[k][0] for k in lonely)}); add their masks (same name, .png) '
        'or remove the images')
  orphans = sorted(set(masks) - set(images))
  if orphans:
    problems.append(
        f'{split}: {len(orphans)} masks have no image in {root}/{image_dir} '
        f'({name_some(masks[k][0] for k in orphans)}); add their images or remove the masks')
  return [Pair(key=k, image=images[k][0], mask=masks[k][0])
          for k in sorted(set(images) & set(masks))]


def _read_list(root: str, list_file: str, split: str, problems: list[str]) -> list[Pair]:
  path = os.path.join(root, list_file)
  pairs, missing, bad, keys = [], [], [], {}
  with open(path, encoding='utf-8') as f:
    lines = f.read().splitlines()
  for number, line in enumerate(lines, 1):
    if not line.strip() or line.lstrip().startswith('#'):
      continue
    parts = line.split('\t') if '\t' in line else line.split()
    parts = [p.strip() for p in parts if p.strip()]
    if len(parts) != 2:
      bad.append(f'{list_file}:{number}')
      continue
    image, mask = parts
    for rel in (image, mask):
      if not os.path.isfile(os.path.join(root, rel)):
        missing.append(f'{list_file}:{number} {rel}')
    key = os.path.splitext(os.path.basename(image))[0]
    if key in keys:   # image_ids must be unique within a split: fall back to the path
      key = os.path.splitext(image)[0]
    keys[key] = number
    pairs.append(Pair(key=key, image=image, mask=mask))
  if bad:
    problems.append(f'{split}: {len(bad)} lines of {path} are not "image mask" '
                    f'({name_some(bad)}); write two paths per line, relative to {root}')
  if missing:
    problems.append(f'{split}: {len(missing)} files named in {path} do not exist '
                    f'({name_some(missing)}); fix the paths (relative to {root})')
  return pairs


def _in_validation(key: str, val_percent: int) -> bool:
  return zlib.crc32(key.encode('utf-8')) % 100 < val_percent


def _carve_validation(splits: dict[str, list[Pair]], val_percent: int) -> None:
  train = splits.get('train', [])
  splits['validation'] = [p for p in train if _in_validation(p.key, val_percent)]
  splits['train'] = [p for p in train if not _in_validation(p.key, val_percent)]


def _find(root: str, names, *, suffix: str = '', files: bool = False) -> str | None:
  for name in names:
    path = os.path.join(root, name + suffix)
    if (os.path.isfile(path) if files else os.path.isdir(path)):
      return name + suffix
  return None


def scan(root: str, *, val_percent: int = 20) -> Layout:
  """Finds the folder's layout and pairs its files; problems are collected, not raised."""
  problems: list[str] = []
  splits: dict[str, list[Pair]] = {}
  lists = {s: _find(root, a, suffix='.lst', files=True) for s, a in SPLIT_ALIASES.items()}
  split_dirs = {
      s: (_find(os.path.join(root, 'images'), a), _find(os.path.join(root, 'masks'), a))
      for s, a in SPLIT_ALIASES.items()}
  outer_dirs = {s: _find(root, a) for s, a in SPLIT_ALIASES.items()}
  if any(lists.values()):
    kind = 'list files'
    for split, list_file in lists.items():
      if list_file:
        splits[split] = _read_list(root, list_file, split, problems)
  elif any(i or m for i, m in split_dirs.values()):
    kind = 'images/<split>, masks/<split>'
    for split, (i, m) in split_dirs.items():
      if i or m:
        if not (i and m):
          problems.append(f'{split}: {root}/{"images" if i else "masks"}/{i or m} has no '
                          f'counterpart {root}/{"masks" if i else "images"}/{i or m}')
          continue
        splits[split] = _pair_dirs(root, f'images/{i}', f'masks/{m}', split, problems)
  elif any(outer_dirs.values()):
    kind = '<split>/images, <split>/masks'
    for split, d in outer_dirs.items():
      if d:
        splits[split] = _pair_dirs(root, f'{d}/images', f'{d}/masks', split, problems)
  elif os.path.isdir(os.path.join(root, 'images')) or os.path.isdir(os.path.join(root, 'masks')):
    kind = 'images, masks (flat)'
    splits['train'] = _pair_dirs(root, 'images', 'masks', 'train', problems)
  else:
    problems.append(f'{root} has none of the layouts: images/ and masks/ (optionally with '
                    'train/ val/ test/ inside, or outside), or train.lst/val.lst list '
                    'files (see docs/custom_data.md)')
    return Layout(root=root, kind='none', splits={}, problems=problems)
  if 'validation' not in splits and 'train' in splits:
    _carve_validation(splits, val_percent)
  if 'train' not in splits:
    problems.append(f'{root} has no train split; add train/ (or train.lst)')
  for split, pairs in splits.items():
    if not pairs:
      carved = split == 'validation' and not (lists['validation'] or outer_dirs['validation']
                                              or split_dirs['validation'][0])
      hint = (f'raise config.data.val_percent (now {val_percent}) or add a val split'
              if carved else 'add image/mask pairs to it or remove it')
      problems.append(f'split {split!r} of {root} is empty (no image/mask pairs); {hint}')
  return Layout(root=root, kind=kind, splits=splits, problems=problems)


def fingerprint(layout: Layout, classes: ClassTable, val_percent: int) -> str:
  """12 hex digits over the file list, sizes, mtimes and the class file."""
  h = hashlib.sha1()
  h.update(f'v{LAYOUT_VERSION} val{val_percent}\n'.encode())
  h.update(classes.text)
  for split in sorted(layout.splits):
    for pair in layout.splits[split]:
      h.update(f'\n{split}\t{pair.key}'.encode('utf-8'))
      for rel in (pair.image, pair.mask):
        st = os.stat(os.path.join(layout.root, rel))
        h.update(f'\t{rel}\t{st.st_size}\t{st.st_mtime_ns}'.encode('utf-8'))
  return h.hexdigest()[:12]


def slug(root: str) -> str:
  """A TFDS-safe name from the folder's own name ('My Streets!' -> 'my_streets')."""
  base = os.path.basename(os.path.normpath(os.path.abspath(root))).lower()
  return (re.sub(r'[^a-z0-9]+', '_', base).strip('_') or 'folder')[:40]


def folder_info(spec):
  """The registry entry (DatasetInfo) of a folder: classes from its class file, its splits.

  Reads the class file and lists the folder; decoding and checks wait for the build.
  """
  from hrnet_jax.data import folder_classes  # pylint: disable=g-import-not-at-top
  from hrnet_jax.data import registry  # pylint: disable=g-import-not-at-top
  classes = folder_classes.parse_class_file(
      folder_classes.find_class_file(spec.root, spec.classes))
  layout = scan(spec.root, val_percent=spec.val_percent)
  splits = tuple((s, s) for s in ('train', 'validation', 'test')
                 if s in layout.splits or s != 'test')
  return registry.DatasetInfo(
      name='folder', tfds_name=f'hrnet_folder/{slug(spec.root)}', task='segmentation',
      num_classes=classes.num_classes, class_names=classes.names,
      palette=folder_classes.palette(classes), label_to_train_id=None,
      image_key='image', label_key='label', id_key='image_id', splits=splits,
      builder_module='hrnet_jax.data.folder', user_folder=spec)

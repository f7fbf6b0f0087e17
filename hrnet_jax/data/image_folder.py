"""`data.name=image_folder`: classification from class-named folders, through TFDS's own
`ImageFolder` builder.

    DIR/train/<class name>/*.jpg|*.jpeg|*.png
    DIR/val/<class name>/...            (or validation/; test/ optional)

    python train.py --config=configs/imagenet_w18_c.py --workdir=/tmp/cls \
        --config.data.name=image_folder --config.data.root=DIR \
        --config.model.num_classes=<number of class folders>

`tfds.folder_dataset.ImageFolder` finds the splits, the (sorted) class names and the
files; its examples (the original encoded bytes) are stored once with
`tfds.dataset_builders.store_as_tfds_dataset` as ArrayRecord in the TFDS data_dir, under
`hrnet_image_folder/<folder name>_<fingerprint of file list, sizes, mtimes>`, so that they
go through the same random-access loader as ImageNet. Every file is decoded before the
build: an unreadable one, a file ImageFolder would skip, or an empty split is one line.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys

from absl import logging

from hrnet_jax.data import folder_checks
from hrnet_jax.data.errors import DataError
from hrnet_jax.data.folder_layout import SPLIT_ALIASES, name_some, slug

TFDS_NAME = 'hrnet_image_folder'
VERSION = '1.0.0'
_READ_BY_TFDS = ('.jpg', '.jpeg', '.png')     # what ImageFolder lists; the rest it skips
_PROBLEM_PREFIX = 'hrnet_jax.data.image_folder problem: '


def _splits(root: str) -> dict[str, str]:
  """Our split name -> the folder name in root."""
  found = {}
  for split, aliases in SPLIT_ALIASES.items():
    for alias in aliases:
      if os.path.isdir(os.path.join(root, alias)):
        found[split] = alias
        break
  return found


def _files(root: str, folder: str) -> list[tuple[str, str]]:
  """(class name, relative path) of every file below root/folder/<class>/."""
  out = []
  base = os.path.join(root, folder)
  for cls in sorted(d for d in os.listdir(base) if os.path.isdir(os.path.join(base, d))):
    for name in sorted(os.listdir(os.path.join(base, cls))):
      if not name.startswith('.'):
        out.append((cls, f'{folder}/{cls}/{name}'))
  return out


def _classes(root: str, splits: dict[str, str]) -> tuple[str, ...]:
  # As ImageFolder: the sorted union of the class folders of every split.
  names = set()
  for folder in splits.values():
    base = os.path.join(root, folder)
    names.update(d for d in os.listdir(base) if os.path.isdir(os.path.join(base, d)))
  return tuple(sorted(names))


def folder_info(spec):
  """The registry entry of a class-named folder tree (lists directories only)."""
  from hrnet_jax.data import registry  # pylint: disable=g-import-not-at-top
  splits = _splits(spec.root)
  if 'train' not in splits or 'validation' not in splits:
    raise DataError(f'{spec.root} needs train/ and val/ folders, each with one folder of '
                    'images per class (found: '
                    f'{", ".join(sorted(splits.values())) or "none"})')
  names = _classes(spec.root, splits)
  return registry.DatasetInfo(
      name='image_folder', tfds_name=f'{TFDS_NAME}/{slug(spec.root)}',
      task='classification', num_classes=len(names), class_names=names,
      image_key='image', label_key='label', id_key='file_name',
      splits=tuple((s, s) for s in ('train', 'validation', 'test') if s in splits),
      builder_module='hrnet_jax.data.image_folder', user_folder=spec)


def check(root: str, *, decode: bool = True) -> tuple[dict[str, list[tuple[str, str]]], str]:
  """Files per split and the build's config name; raises FolderCheckError on problems.

  `decode=False` lists and stats only (finding an existing build); a build decodes all.
  """
  splits = _splits(root)
  problems, files, h = [], {}, hashlib.sha1(f'v1 {VERSION}'.encode())
  for split, folder in sorted(splits.items()):
    files[split] = _files(root, folder)
    skipped = [rel for _, rel in files[split]
               if os.path.splitext(rel)[1].lower() not in _READ_BY_TFDS]
    if skipped:
      problems.append(f'{len(skipped)} files in {root}/{folder} are not .jpg/.jpeg/.png, '
                      f'which TFDS ImageFolder reads ({name_some(skipped)}); convert them')
    files[split] = [(c, rel) for c, rel in files[split] if rel not in set(skipped)]
    if not files[split]:
      problems.append(f'split {split!r} of {root} ({folder}/) has no images in class '
                      'folders; add <class name>/<image> files to it')
    for cls, rel in files[split]:
      st = os.stat(os.path.join(root, rel))
      h.update(f'{split}\t{cls}\t{rel}\t{st.st_size}\t{st.st_mtime_ns}\n'.encode('utf-8'))
  for split in ('train', 'validation'):
    if split not in splits:
      problems.append(f'{root} has no {SPLIT_ALIASES[split][0]}/ folder of class folders')
  unreadable = []
  for split_files in (files.values() if decode else ()):
    for _, rel in split_files:
      try:
        folder_checks.open_image(os.path.join(root, rel), 'image')
      except folder_checks.Refused as e:
        unreadable.append(str(e))
  problems += unreadable[:5]
  if len(unreadable) > 5:
    problems.append(f'... and {len(unreadable) - 5} more unreadable files')
  if problems:
    raise folder_checks.FolderCheckError(root, problems)
  return files, f'{slug(root)}_{h.hexdigest()[:12]}'


def build(root: str, data_dir: str) -> str:
  """Checks `root` and stores ImageFolder's examples as ArrayRecord; returns the dir."""
  _, config_name = check(root)
  path = os.path.join(data_dir, TFDS_NAME, config_name, VERSION)
  if os.path.exists(os.path.join(path, 'dataset_info.json')):
    return path
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()
  source = tfds.folder_dataset.ImageFolder(root)
  names = source.info.features['label'].names
  prefix = os.path.join(os.path.abspath(root), '')
  ours = {alias: split for split, aliases in SPLIT_ALIASES.items() for alias in aliases}

  def relative(example):
    return {'image': example['image'], 'label': example['label'],
            'file_name': tf.strings.regex_replace(example['image/filename'],
                                                  '^' + prefix.replace('\\', '\\\\'), '')}

  split_datasets = {
      ours[split]: source.as_dataset(split=split, shuffle_files=False,
                                     decoders={'image': tfds.decode.SkipDecoding()}
                                     ).map(relative)
      for split in source.info.splits if split in ours}
  tfds.dataset_builders.store_as_tfds_dataset(
      name=TFDS_NAME, version=VERSION, config=config_name, data_dir=data_dir,
      features=tfds.features.FeaturesDict({
          'image': tfds.features.Image(shape=(None, None, 3)),
          'label': tfds.features.ClassLabel(names=names),
          'file_name': tfds.features.Text()}),
      split_datasets=split_datasets, file_format='array_record', disable_shuffling=True,
      description=f'Class-named folders of {root} (tfds.folder_dataset.ImageFolder).')
  return path


def get_builder(info, *, data_dir: str, manual_dir: str | None = None, build: bool = True):
  """The TFDS builder of the folder, checked and built (in a child process) if need be."""
  del manual_dir
  root = info.user_folder.root
  try:
    _, config_name = check(root, decode=False)   # the child decodes all before a build
  except folder_checks.FolderCheckError as e:
    e.log()
    raise
  path = os.path.join(data_dir, TFDS_NAME, config_name, VERSION)
  if not os.path.exists(os.path.join(path, 'dataset_info.json')):
    if not build:
      raise DataError(f'{root} is not built into {data_dir} yet')
    logging.info('Building %s into %s (once; a child process runs TFDS).', root, data_dir)
    result = subprocess.run(
        [sys.executable, '-m', 'hrnet_jax.data.image_folder', root, data_dir],
        capture_output=True, text=True, check=False)
    problems = [line[len(_PROBLEM_PREFIX):] for line in result.stderr.splitlines()
                if line.startswith(_PROBLEM_PREFIX)]
    if problems:
      raise folder_checks.FolderCheckError(root, problems).log()
    if result.returncode:
      raise RuntimeError(f'building {root} into {data_dir} failed:\n{result.stderr[-5000:]}')
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tfds.builder_from_directory(path)


if __name__ == '__main__':
  # The child process of get_builder: python -m hrnet_jax.data.image_folder ROOT DATA_DIR
  from hrnet_jax.data import build as _build  # pylint: disable=g-import-not-at-top
  try:
    _build._limit_tensorflow()   # pylint: disable=protected-access
    print(build(sys.argv[1], sys.argv[2]))
  except DataError as error:
    for line in getattr(error, 'problems', [str(error)]):
      print(f'{_PROBLEM_PREFIX}{line}', file=sys.stderr)
    sys.exit(3)

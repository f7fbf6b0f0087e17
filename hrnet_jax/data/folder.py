"""`data.name=folder`: a segmentation dataset from the user's folder of images and masks.

    python train.py --config=configs/folder_seg.py --workdir=/tmp/run \
        --config.data.root=/path/to/my_data
    python -m hrnet_jax.data.folder --root=/path/to/my_data    # check (and build) ahead

The folder (layouts: hrnet_jax/data/folder_layout.py; class file:
hrnet_jax/data/folder_classes.py) is checked in full (hrnet_jax/data/folder_checks.py)
and built once into a real TFDS dataset, `hrnet_folder/<folder name>_<fingerprint>` in
the TFDS data_dir, where the fingerprint covers the file list, sizes, mtimes and the
class file: a changed folder is built again, two folders never share a build, and a
folder that fails its checks writes nothing there. From then on it is read like every
other dataset (ArrayRecord through `tfds.data_source`), with labels stored as class ids.

As for the other datasets, the build runs in a child process (this module's CLI) so
TensorFlow never enters the trainer.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile

from absl import logging

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from hrnet_jax.data import folder_checks  # pylint: disable=g-import-not-at-top
from hrnet_jax.data import folder_classes  # pylint: disable=g-import-not-at-top
from hrnet_jax.data import folder_layout  # pylint: disable=g-import-not-at-top
from hrnet_jax.data import sources  # pylint: disable=g-import-not-at-top
from hrnet_jax.data.errors import DataError  # pylint: disable=g-import-not-at-top

TFDS_NAME = 'hrnet_folder'
VERSION = '1.0.0'
_PROBLEM_PREFIX = 'hrnet_jax.data.folder problem: '


def _tfds():
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tfds


def _read_spec(spec):
  """(class table, layout, TFDS config name) of a folder, from listing and stat only."""
  classes = folder_classes.parse_class_file(
      folder_classes.find_class_file(spec.root, spec.classes))
  layout = folder_layout.scan(spec.root, val_percent=spec.val_percent)
  if layout.problems:   # files missing: nothing to fingerprint; the checks say what
    return classes, layout, None
  digest = folder_layout.fingerprint(layout, classes, spec.val_percent)
  return classes, layout, f'{folder_layout.slug(spec.root)}_{digest}'


def build_dir(data_dir: str, config_name: str) -> str:
  return os.path.join(data_dir, TFDS_NAME, config_name, VERSION)


def _make_builder_class():
  """The GeneratorBasedBuilder, defined on first use so that importing this is light."""
  tfds = _tfds()

  class FolderConfig(tfds.core.BuilderConfig):
    """One folder: its layout, classes and image size (fixed, or None if sizes vary)."""

    def __init__(self, *, layout, classes, image_size, **kwargs):
      super().__init__(**kwargs)
      self.layout, self.classes, self.image_size = layout, classes, image_size

  class HrnetFolder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Images and masks of a user's folder; labels are class ids (255 = ignore)."""

    VERSION = tfds.core.Version(VERSION)

    def _info(self):
      h, w = self.builder_config.image_size or (None, None)
      return tfds.core.DatasetInfo(
          builder=self,
          description=f'Images and masks of {self.builder_config.layout.root} '
                      f'({self.builder_config.layout.kind} layout); classes: '
                      f'{", ".join(self.builder_config.classes.names)}.',
          features=tfds.features.FeaturesDict({
              # Original JPEG/PNG bytes where they are 8-bit RGB, else PNG: no re-encoding.
              'image': tfds.features.Image(shape=(h, w, 3)),
              'label': tfds.features.Image(shape=(h, w, 1), encoding_format='png'),
              'image_id': tfds.features.Text(),
          }),
          supervised_keys=('image', 'label'),
          # Examples stay in file (or list-file) order: example i is the i-th pair.
          disable_shuffling=True,
      )

    def _split_generators(self, dl_manager):
      del dl_manager
      return {split: self._generate_examples(pairs)
              for split, pairs in self.builder_config.layout.splits.items()}

    def _generate_examples(self, pairs):
      cfg = self.builder_config
      for pair in pairs:
        image, _, _ = folder_checks.encode_image(os.path.join(cfg.layout.root, pair.image))
        label = folder_checks.encode_mask(os.path.join(cfg.layout.root, pair.mask),
                                          cfg.classes)
        yield pair.key, {'image': image, 'label': label, 'image_id': pair.key}

  return FolderConfig, HrnetFolder


def check_and_build(spec, data_dir: str) -> str:
  """Checks the folder and builds it into data_dir unless built; returns the build dir.

  Raises FolderCheckError (one line per problem) before anything is written.
  """
  classes, layout, config_name = _read_spec(spec)
  report = folder_checks.check_folder(layout, classes)   # raises on any problem
  for line in report.lines():
    logging.info('converted %s', line)
  path = build_dir(data_dir, config_name)
  if os.path.exists(os.path.join(path, 'dataset_info.json')):
    return path
  from hrnet_jax.data import build  # pylint: disable=g-import-not-at-top
  build._limit_tensorflow()   # pylint: disable=protected-access
  sizes = report.image_sizes
  folder_config_cls, builder_cls = _make_builder_class()
  config = folder_config_cls(
      name=config_name, version=VERSION, layout=layout, classes=classes,
      image_size=next(iter(sizes)) if len(sizes) == 1 else None,
      description=f'built from {spec.root}')
  tfds = _tfds()
  tfds.disable_progress_bar()
  builder = builder_cls(config=config, data_dir=data_dir, file_format='array_record')
  builder.download_and_prepare()
  return path


@contextlib.contextmanager
def _lock(config_name: str):
  """Serialises builds of one folder by several processes (outside the data_dir)."""
  with sources.file_lock(os.path.join(tempfile.gettempdir(),
                                      f'.{TFDS_NAME}_{config_name}.lock')):
    yield


def get_builder(info, *, data_dir: str, manual_dir: str | None = None, build: bool = True):
  """The TFDS builder of a folder dataset, checked and built (in a child) if need be."""
  del manual_dir
  spec = info.user_folder
  _, _, config_name = _read_spec(spec)
  path = build_dir(data_dir, config_name) if config_name else None
  if path is None or not os.path.exists(os.path.join(path, 'dataset_info.json')):
    if not build:
      raise DataError(f'{spec.root} is not built into {data_dir} yet; run python -m '
                      f'hrnet_jax.data.folder --root={spec.root} --data_dir={data_dir}')
    with _lock(config_name or folder_layout.slug(spec.root)):
      path = _build_in_child(spec, data_dir)
  _note_stale_builds(data_dir, os.path.basename(os.path.dirname(path)), spec.root)
  return _tfds().builder_from_directory(path)


def _build_in_child(spec, data_dir: str) -> str:
  logging.info('Checking and building %s into %s (once; a child process runs TFDS).',
               spec.root, data_dir)
  args = [sys.executable, '-m', 'hrnet_jax.data.folder', f'--root={spec.root}',
          f'--data_dir={data_dir}', f'--val_percent={spec.val_percent}']
  if spec.classes:
    args.append(f'--classes={spec.classes}')
  result = subprocess.run(args, capture_output=True, text=True, check=False)
  problems = [line[len(_PROBLEM_PREFIX):] for line in result.stderr.splitlines()
              if line.startswith(_PROBLEM_PREFIX)]
  if problems:
    raise folder_checks.FolderCheckError(spec.root, problems).log()
  if result.returncode != 0 or not result.stdout.strip():
    raise RuntimeError(f'building {spec.root} into {data_dir} failed:\n'
                       f'{result.stderr[-5000:]}')
  return result.stdout.strip().splitlines()[-1]


def _note_stale_builds(data_dir: str, current: str, root: str) -> None:
  """Says which older builds of the same folder name are left (the user may delete them)."""
  base = os.path.join(data_dir, TFDS_NAME)
  prefix = current.rsplit('_', 1)[0] + '_'
  stale = [d for d in sorted(os.listdir(base)) if d.startswith(prefix) and d != current
           and len(d) == len(current)] if os.path.isdir(base) else []
  if stale:
    logging.info('%s changed since %s was built from it; that build is unused now (delete '
                 'it to free space).', root, ', '.join(os.path.join(base, d) for d in stale))


def main(argv) -> int:
  """CLI: check a folder and build it (the child process of `get_builder`, or by hand)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from hrnet_jax.data import registry, sources  # pylint: disable=g-import-not-at-top
  del argv
  f = flags.FLAGS
  spec = registry.FolderSpec(root=os.path.abspath(os.path.expanduser(f.root)),
                             classes=f.classes, val_percent=f.val_percent)
  data_dir = os.path.expanduser(f.data_dir or sources.default_data_dir())
  try:
    if f.check_only:
      classes, layout, _ = _read_spec(spec)
      report = folder_checks.check_folder(layout, classes)
      for line in report.lines():
        print(f'converted {line}')
      print(f'{spec.root}: {layout.kind} layout, ' + ', '.join(
          f'{s} {len(p)}' for s, p in layout.splits.items()) + ' pairs; checks passed')
      return 0
    print(check_and_build(spec, data_dir))
  except folder_checks.FolderCheckError as e:
    for line in e.problems:
      print(f'{_PROBLEM_PREFIX}{line}', file=sys.stderr)
    return 3
  except DataError as e:
    print(f'{_PROBLEM_PREFIX}{e}', file=sys.stderr)
    return 3
  return 0


def _define_flags():
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string('root', None, 'The folder: images/ and masks/, or list files.')
  flags.DEFINE_string('classes', None, 'Class file (default: classes.txt in the folder).')
  flags.DEFINE_integer('val_percent', 20, 'Share of train used as validation when the '
                       'folder has no val split.')
  flags.DEFINE_string('data_dir', None, 'TFDS data_dir (default: $TFDS_DATA_DIR or '
                      '~/tensorflow_datasets).')
  flags.DEFINE_bool('check_only', False, 'Run the checks, build nothing.')
  flags.mark_flag_as_required('root')


if __name__ == '__main__':
  from absl import app  # pylint: disable=g-import-not-at-top
  _define_flags()
  app.run(lambda argv: sys.exit(main(argv)))

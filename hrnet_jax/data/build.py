"""Builds a dataset of the registry into a TFDS data_dir (ArrayRecord), once.

    python -m hrnet_jax.data.build cityscapes [more names] \
        --data_dir=~/tensorflow_datasets --manual_dir=~/downloads/cityscapes

The loaders call this (in a child process) when a dataset is not built yet; run it ahead
of a multi-host job so the hosts do not race to build it.
"""
import argparse
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# oneDNN only changes TF float kernels (unused: TF just encodes while building) and
# announces itself on stderr at import.
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')


def _limit_tensorflow() -> None:
  """Few threads and no GPU/TPU for TF: a build must not compete with accelerators' users."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.threading.set_intra_op_parallelism_threads(2)
  tf.config.threading.set_inter_op_parallelism_threads(2)
  tf.config.set_visible_devices([], 'GPU')


def build(name: str, data_dir: str, manual_dir: str) -> str:
  """Builds `name` (a registry key) unless it is already there; returns its directory."""
  import importlib  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from hrnet_jax.data import registry  # pylint: disable=g-import-not-at-top
  from hrnet_jax.data import sources  # pylint: disable=g-import-not-at-top
  info = registry.get_dataset_info(name)
  if info.builder_module:
    importlib.import_module(info.builder_module)
  builder, prepared = sources.find_builder(tfds, info, data_dir)
  if not prepared:
    sources.check_manual_files(info, manual_dir)
    _limit_tensorflow()
    tfds.disable_progress_bar()
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  return builder.data_dir


def main(argv=None) -> int:
  from hrnet_jax.data import sources  # pylint: disable=g-import-not-at-top
  from hrnet_jax.data.errors import DataError  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('names', nargs='+', help='datasets (config.data.name values)')
  parser.add_argument('--data_dir', default=None, help='TFDS data_dir')
  parser.add_argument('--manual_dir', default=None,
                      help='directory of the downloaded archives (<data_dir>/downloads/manual)')
  args = parser.parse_args(argv)
  data_dir = os.path.expanduser(args.data_dir or sources.default_data_dir())
  manual_dir = os.path.expanduser(args.manual_dir or sources.default_manual_dir(data_dir))
  try:
    for name in args.names:
      print(build(name, data_dir, manual_dir))
  except DataError as e:
    print(f'{sources.BUILD_ERROR_PREFIX}{e}', file=sys.stderr)
    return 3
  return 0


if __name__ == '__main__':
  sys.exit(main())

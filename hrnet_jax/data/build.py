"""Builds a dataset of the registry into a TFDS data_dir (ArrayRecord), once.

    python -m hrnet_jax.data.build cityscapes [more names] \
        --data_dir=~/tensorflow_datasets --manual_dir=~/downloads/cityscapes

The loaders call this (in a child process) when a dataset is not built yet; run it ahead
of a multi-host job so the hosts do not race to build it.

A build dies with the process that started it (Linux parent-death signal; not under
`nohup`, which ignores hang-ups on purpose), holds `<data_dir>/.<name>.build.lock` while
it writes, and first removes the `incomplete.*` directory that an interrupted build of
the same dataset left behind. Errors are one line on stderr (`--debug`: traceback).
"""
import argparse
import contextlib
import glob
import os
import shutil
import signal
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


def die_with_parent() -> None:
  """SIGKILL this process when its parent dies (Linux prctl PR_SET_PDEATHSIG).

  Without it, kill -9 of a training run left its build child running as an orphan.
  """
  if not sys.platform.startswith('linux'):
    return
  if signal.getsignal(signal.SIGHUP) == signal.SIG_IGN:
    return   # nohup: the user asked this build to outlive its shell
  import ctypes  # pylint: disable=g-import-not-at-top
  try:
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
  except (OSError, AttributeError):
    return
  if os.getppid() == 1:   # the parent died before prctl took effect
    os._exit(1)  # pylint: disable=protected-access


@contextlib.contextmanager
def _builder_lock(data_dir: str, name: str):
  """Held by the building process itself: released when it dies, however it dies."""
  if '://' in data_dir:
    yield
    return
  import fcntl  # pylint: disable=g-import-not-at-top
  os.makedirs(data_dir, exist_ok=True)
  with open(os.path.join(data_dir, f'.{name.replace("/", "_")}.build.lock'), 'w') as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def remove_incomplete(builder_data_dir: str) -> list[str]:
  """Removes what an interrupted build of this dataset version left behind.

  TFDS writes `<dataset>/[<config>/]incomplete.XXXXXX_<version>/` and renames it to
  `<version>` when done; only call this holding the build lock.
  """
  parent, version = os.path.split(os.path.normpath(builder_data_dir))
  removed = sorted(glob.glob(os.path.join(parent, f'incomplete.*_{version}')))
  for path in removed:
    shutil.rmtree(path, ignore_errors=True)
  return removed


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
  if prepared:
    return builder.data_dir
  sources.check_manual_files(info, manual_dir)
  with _builder_lock(data_dir, info.tfds_name):
    builder, prepared = sources.find_builder(tfds, info, data_dir)   # built meanwhile?
    if not prepared:
      for path in remove_incomplete(builder.data_dir):
        print(f'removed {path} (left by an interrupted build)', file=sys.stderr)
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
  parser.add_argument('--debug', action='store_true', help='show full tracebacks')
  args = parser.parse_args(argv)
  die_with_parent()
  debug = args.debug or os.environ.get('HRNET_DEBUG', '').lower() in ('1', 'true', 'yes')
  data_dir = os.path.expanduser(args.data_dir or sources.default_data_dir())
  manual_dir = os.path.expanduser(args.manual_dir or sources.default_manual_dir(data_dir))
  try:
    for name in args.names:
      print(build(name, data_dir, manual_dir))
  except DataError as e:
    print(f'{sources.BUILD_ERROR_PREFIX}{e}', file=sys.stderr)
    return 3
  except Exception as e:  # pylint: disable=broad-except  # one line for the parent
    if debug:
      raise
    from hrnet_jax import cli  # pylint: disable=g-import-not-at-top
    what = cli.describe(e) if isinstance(e, OSError) else f'{type(e).__name__}: {cli.describe(e)}'
    print(f'{sources.BUILD_ERROR_PREFIX}building into {data_dir} failed: {what}',
          file=sys.stderr)
    return 3
  return 0


if __name__ == '__main__':
  sys.exit(main())

"""Faults and bad input, as a user meets them on the command lines.

Every case runs the real CLI in a subprocess (train.py, eval.py, predict, export,
convert, data.build) on a tiny quickstart run (64x64 crops, 8 steps, 2 CPU devices,
checkpoints every 3 steps), with real files: a truncated or deleted array file, an
empty step directory, a full disk (a 30 MB tmpfs, when this process may mount one), a
read-only workdir, Ctrl-C, SIGTERM to one of two processes. Each asserts one line
`error: ...` last on stderr, a non-zero exit, no traceback (unless --debug) and,
after each fault, that a restart reaches the final parameters of an uninterrupted run
bit for bit. One uninterrupted run is shared by the module.
"""
import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from hrnet_jax import checkpointing
from hrnet_jax import cli
from hrnet_jax import config_validation
from hrnet_jax.data import build as data_build

# Subprocess / multi-process end-to-end runs: the full suite, not the inner-loop tier.
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ('--config=configs/quickstart.py', '--config.data.name=hrnet_synthetic_tiny',
        '--config.data.crop_size=(64,64)', '--config.data.base_size=128',
        '--config.data.num_workers=0', '--config.global_batch_size=4',
        '--config.loss.chunk_images=2', '--config.num_train_steps=8',
        '--config.optimizer.learning_rate=0.01', '--config.checkpoint.every_steps=3',
        '--config.eval.every_steps=-1', '--config.eval.global_batch_size=4',
        '--config.eval.crop_size=(64,128)', '--config.log_every_steps=1')
EVAL = ('--config.data.max_eval_examples=4',)


def env(devices=2, **extra):
  e = dict(os.environ)
  e.update(JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2',
           XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
  e.setdefault('JAX_COMPILATION_CACHE_DIR',
               os.path.join(os.path.expanduser('~'), '.cache', 'hrnet-jax-tests-xla'))
  e.pop('HRNET_DEBUG', None)
  e.update(extra)
  return e


def run(*args, devices=2, timeout=900):
  """A command of the repository (train.py ..., -m hrnet_jax.x ...) in a subprocess."""
  if args[0].endswith('.py'):
    args = (os.path.join(ROOT, args[0]),) + args[1:]
  return subprocess.run([sys.executable, *args], cwd=ROOT, env=env(devices),
                        capture_output=True, text=True, timeout=timeout)


def train(workdir, *extra, check=True):
  result = run('train.py', *TINY, f'--workdir={workdir}', *extra)
  if check and result.returncode != 0:
    raise AssertionError(f'train.py exited {result.returncode}:\n{result.stderr[-4000:]}')
  return result


def assert_one_line(result, *words):
  """Non-zero exit; the last stderr line is `error: ...` with `words`; no traceback."""
  lines = [l for l in result.stderr.splitlines() if l.strip()]
  assert result.returncode != 0, result.stderr[-3000:]
  assert lines and lines[-1].startswith('error: '), result.stderr[-3000:]
  assert 'Traceback' not in result.stderr, result.stderr[-3000:]
  assert 'Event loop is closed' not in result.stderr
  for word in words:
    assert word in lines[-1], lines[-1]
  return lines[-1]


def final(workdir, which='latest'):
  variables, meta = checkpointing.load_model(str(workdir), which=which)
  return variables, meta['step']


def assert_identical(a, b):
  flat_a, flat_b = jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)
  assert len(flat_a) == len(flat_b) > 0
  for (path, x), y in zip(flat_a, flat_b):
    np.testing.assert_array_equal(x, y, err_msg=jax.tree_util.keystr(path))


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """One uninterrupted 8-step run: (workdir, variables at step 8)."""
  workdir = tmp_path_factory.mktemp('reference')
  train(workdir)
  variables, step = final(workdir)
  assert step == 8
  return workdir, variables


def _copy(src, dst):
  shutil.copytree(src, dst)
  return dst


def _array_files(step_dir):
  files = glob.glob(os.path.join(step_dir, 'state', 'ocdbt.process_*', 'd', '*'))
  assert files, step_dir
  return sorted(files, key=os.path.getsize, reverse=True)


# ----------------------------------------------------------------------------
# Fast: no training.
# ----------------------------------------------------------------------------
def test_every_recipe_validates_and_none_means_unset():
  for path in glob.glob(os.path.join(ROOT, 'configs', '*.py')):
    name = os.path.basename(path)[:-3]
    module = __import__(f'configs.{name}', fromlist=['get_config'])
    if hasattr(module, 'get_config'):   # configs/ also holds shared helper modules
      config_validation.validate(module.get_config(), check_paths=False)
  config = __import__('configs.cityscapes_w48', fromlist=['x']).get_config()
  for word in ('None', 'none', ''):
    config.init_checkpoint = word
    assert config_validation.validate(config).init_checkpoint is None
  config.init_checkpoint = 'checkpoints/not-converted-yet'
  with pytest.raises(config_validation.ConfigError, match='config.init_checkpoint=.*convert'):
    config_validation.validate(config)


def test_os_errors_are_one_line_naming_path_and_cause():
  assert cli.describe(OSError(28, 'No space left on device', '/w/x')) == (
      '/w/x: no space left on device (free some space or use another directory)')
  assert 'read-only file system' in cli.describe(OSError(30, 'Read-only file system', '/w'))
  from hrnet_jax.checkpointing import store  # pylint: disable=g-import-not-at-top
  inner = ValueError('RESOURCE_EXHAUSTED: Failed to write 803236 bytes to file 6: '
                     'No space left on device [os_error_code=28]')
  try:
    try:
      raise inner
    except ValueError as e:
      raise RuntimeError('commit failed') from e
  except RuntimeError as outer:
    assert store.describe_error(outer) == 'No space left on device'


def test_build_child_dies_with_its_parent(tmp_path):
  pid_file = tmp_path / 'child.pid'
  # SIGHUP back to default first: under nohup (a suite started that way) the build is
  # meant to outlive its parent, and that is not what this test is about.
  child = (f'import os, signal, time; signal.signal(signal.SIGHUP, signal.SIG_DFL); '
           f'from hrnet_jax.data import build; build.die_with_parent(); '
           f'open({str(pid_file)!r}, "w").write(str(os.getpid())); time.sleep(120)')
  parent = subprocess.Popen([sys.executable, '-c',
                             f'import subprocess, sys, time; subprocess.Popen([sys.executable, '
                             f'"-c", {child!r}]); time.sleep(120)'], cwd=ROOT, env=env())
  deadline = time.time() + 120
  while not pid_file.exists() or not pid_file.read_text():
    assert time.time() < deadline, 'the child never started'
    time.sleep(0.1)
  child_pid = int(pid_file.read_text())
  parent.kill()
  parent.wait()
  deadline = time.time() + 20
  while os.path.exists(f'/proc/{child_pid}') and 'zombie' not in _state(child_pid):
    assert time.time() < deadline, 'the build child outlived its parent'
    time.sleep(0.1)


def _state(pid):
  try:
    with open(f'/proc/{pid}/status') as f:
      return f.read().lower()
  except OSError:
    return 'gone'


def test_a_rerun_removes_what_an_interrupted_build_left(tmp_path):
  version_dir = tmp_path / 'tfds' / 'hrnet_synthetic_tiny' / '1.0.0'
  left = tmp_path / 'tfds' / 'hrnet_synthetic_tiny' / 'incomplete.AB12CD_1.0.0'
  other = tmp_path / 'tfds' / 'hrnet_synthetic_tiny' / 'incomplete.AB12CD_2.0.0'
  for d in (left / 'x', other):
    os.makedirs(d)
  assert data_build.remove_incomplete(str(version_dir)) == [str(left)]
  assert not left.exists() and other.exists()


def test_data_state_is_saved_once_and_fits_any_process_count():
  from hrnet_jax.checkpointing import store  # pylint: disable=g-import-not-at-top
  state = {'version': 1, 'next_step': 6, 'seed': 0}
  assert store._loader_state({'version': 2, 'loader': state}) == state
  # Written before: one identical copy per process, e.g. by 2 processes; read by 1.
  assert store._loader_state({'processes': [state, state]}) == state


def test_a_failed_save_names_the_cause_and_the_last_good_step(tmp_path):
  import ml_collections  # pylint: disable=g-import-not-at-top
  meta = {'model': 'hrnet_w18_small_v1', 'head': 'seg', 'num_classes': 2, 'options': {},
          'source': 'test'}
  state = {'step': np.int32(0), 'params': {'w': np.arange(4096, dtype=np.float32)}}
  with _tmpfs(tmp_path / 'disk', '1m') as disk:
    manager = checkpointing.TrainCheckpointManager(str(disk), every_steps=1, keep=5)
    kwargs = dict(data_state={'next_step': 1}, config=ml_collections.ConfigDict(),
                  metadata=meta)
    assert manager.save(1, state, **kwargs)
    manager.wait()
    subprocess.run(['mount', '-o', 'remount,ro', str(disk)], check=True)
    with pytest.raises(checkpointing.CheckpointSaveError) as info:
      manager.save(2, state, **kwargs)
      manager.wait()
    manager.close()
    assert info.value.last_good_step == 1 and 'Read-only file system' in info.value.cause
    assert 'Last good checkpoint: step 1' in str(info.value) and '\n' not in str(info.value)
    assert sorted(os.listdir(disk / 'checkpoints')) == ['1']


# ----------------------------------------------------------------------------
# Mistakes that stop a command before any work (one subprocess each, no training).
# ----------------------------------------------------------------------------
CONFIG_MISTAKES = [
    ('--config.data.crop_size=abc', 'config.data.crop_size'),
    ('--config.model.dtype=float99', 'config.model.dtype'),
    ('--config.eval.scales=abc', 'config.eval.scales'),
    ('--config.eval.scales=(0.0,1.0)', 'config.eval.scales'),
    ('--config.eval.mode=foo', 'config.eval.mode'),
    ('--config.data.max_eval_examples=0', 'config.data.max_eval_examples'),
    ('--config.data.name=nope', 'config.data.name'),
    ('--config.model.name=hrnet_w99', 'config.model.name'),
    ('--config.optimizer.name=lamb', 'config.optimizer.name'),
    ('--config.init_checkpoint=/nonexistent/imagenet', 'config.init_checkpoint'),
    ('--config.data.manual_dir=/nonexistent/zips', 'config.data.manual_dir'),
    ('--config.global_batch_size=3', 'devices'),
    ('--config.optimizer.lernrate=0.1', 'learning_rate'),
]


@pytest.mark.parametrize('override,words', CONFIG_MISTAKES, ids=[c[0] for c in CONFIG_MISTAKES])
def test_config_mistakes_are_one_line_before_any_work(tmp_path, override, words):
  result = train(tmp_path / 'w', override, check=False)
  assert_one_line(result, words)
  assert not os.path.exists(tmp_path / 'w' / 'checkpoints')


def test_eval_batch_that_does_not_divide_over_the_devices_fails_before_training(tmp_path):
  result = train(tmp_path / 'w', '--config.eval.global_batch_size=3',
                 '--config.eval.every_steps=8', check=False)
  assert_one_line(result, 'config.eval.global_batch_size=3', 'multiple of the 2 devices')
  assert not os.path.exists(tmp_path / 'w' / 'checkpoints')


def test_empty_eval_split_is_one_line_naming_the_split(tmp_path):
  result = train(tmp_path / 'w', '--config.data.eval_split=validation[:0]',
                 '--config.eval.every_steps=8', check=False)
  assert_one_line(result, "split 'validation[:0]'", 'holds no examples', 'eval_split')


def test_debug_shows_the_traceback(tmp_path):
  result = run('train.py', *TINY, f'--workdir={tmp_path}', '--config.eval.mode=foo',
               '--debug')
  assert result.returncode != 0 and 'Traceback' in result.stderr


def test_workdir_that_is_a_file_or_read_only(tmp_path):
  (tmp_path / 'file').write_text('x')
  assert_one_line(train(tmp_path / 'file', check=False), 'is a file')
  with _tmpfs(tmp_path / 'ro', '1m', read_only=True) as ro:
    assert_one_line(train(ro / 'w', check=False), 'read-only file system')
    # A TFDS data_dir where the dataset would have to be built.
    assert_one_line(train(tmp_path / 'w', f'--config.data.data_dir={ro}', check=False),
                    'read-only file system')


@contextlib.contextmanager
def _tmpfs(path, size, read_only=False):
  os.makedirs(path, exist_ok=True)
  options = f'size={size}' + (',ro' if read_only else '')
  if subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', str(path)],
                    capture_output=True).returncode != 0:
    pytest.skip('mounting a tmpfs needs root')
  try:
    yield path
  finally:
    subprocess.run(['umount', '-l', str(path)], check=False)


def test_cli_mistakes_on_a_trained_workdir_are_one_line(reference, tmp_path):
  workdir, _ = reference
  (tmp_path / 'file').write_text('x')
  (tmp_path / 'old.pth').write_bytes(b'keep me')
  image = tmp_path / 'img.png'
  from PIL import Image  # pylint: disable=g-import-not-at-top
  Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(image)
  cases = [
      (('-m', 'hrnet_jax.predict', f'--checkpoint={workdir}', str(image),
        f'--out={tmp_path / "file"}'), 'is a file'),
      (('-m', 'hrnet_jax.predict', f'--checkpoint={workdir}', str(image),
        f'--out={tmp_path / "p"}', '--scales=0.1'), 'too small'),
      (('-m', 'hrnet_jax.predict', f'--checkpoint={workdir}', str(image),
        f'--out={tmp_path / "p"}', '--scales=-1'), '--scales'),
      (('-m', 'hrnet_jax.export', f'--checkpoint={workdir}', f'--out={tmp_path / "m"}',
        '--height=16', '--width=64'), '32x32'),
      (('-m', 'hrnet_jax.convert', '--to-torch', f'--src={workdir}',
        f'--out={tmp_path / "old.pth"}'), '--overwrite'),
      (('eval.py', *TINY, *EVAL, f'--checkpoint={workdir}', f'--workdir={tmp_path / "e"}',
        '--which=best'), 'no finalized checkpoint'),
      (('eval.py', *TINY, *EVAL, f'--checkpoint={workdir}', f'--workdir={tmp_path / "e"}',
        '--which=5'), 'no step 5'),
      (('eval.py', *TINY, *EVAL, f'--checkpoint={workdir}', f'--workdir={tmp_path / "e"}',
        '--config.model.num_classes=7'), 'classes'),
      (('eval.py', *TINY, *EVAL, f'--checkpoint={workdir}', f'--workdir={tmp_path / "e"}',
        '--config.eval.scales=(0.1,)'), '32x32'),
      (('train.py', *TINY, f'--workdir={tmp_path / "t"}', f'--config.init_checkpoint={workdir}',
        '--config.model.name=hrnet_w18_small_v2'), 'init_checkpoint'),
      (('train.py', *TINY, f'--workdir={tmp_path / "t2"}', '--config.data.name=cityscapes',
        f'--config.data.data_dir={tmp_path / "tfds"}',
        f'--config.data.manual_dir={tmp_path / "empty"}'), 'leftImg8bit'),
  ]
  os.makedirs(tmp_path / 'empty')
  for args, words in cases:
    assert_one_line(run(*args), words)
  assert (tmp_path / 'old.pth').read_bytes() == b'keep me'


# ----------------------------------------------------------------------------
# Faults during training, each followed by a restart that ends bit-identical.
# ----------------------------------------------------------------------------
@pytest.mark.slow
def test_unreadable_checkpoints_fall_back_to_the_newest_readable(reference, tmp_path):
  workdir = _copy(reference[0], tmp_path / 'w')
  ckpts = workdir / 'checkpoints'
  # A truncated array file in the latest step.
  with open(_array_files(ckpts / '8')[0], 'r+b') as f:
    f.truncate(100)
  # eval.py says so in one line and evaluates step 6.
  result = run('eval.py', *TINY, *EVAL, f'--checkpoint={workdir}',
               f'--workdir={tmp_path / "e"}')
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Traceback' not in result.stderr and 'Event loop is closed' not in result.stderr
  assert len([l for l in result.stderr.splitlines() if 'is unreadable' in l]) == 1
  with open(tmp_path / 'e' / 'eval_results.json') as f:
    assert json.load(f)['step'] == 6
  # train.py moves it aside, resumes from 6 and ends where the uninterrupted run did.
  result = train(workdir)
  assert 'Traceback' not in result.stderr
  assert 'step 8 is unreadable' in result.stderr and 'step 6' in result.stderr
  assert os.path.isdir(ckpts / '8.unreadable')
  variables, step = final(workdir)
  assert step == 8
  assert_identical(variables, reference[1])
  # An empty newer step, a deleted array file and a deleted _METADATA: back to 6 again.
  os.makedirs(ckpts / '9')
  os.remove(_array_files(ckpts / '8')[0])
  result = train(workdir, '--config.num_train_steps=8')
  assert 'step 9 is unreadable' in result.stderr and 'step 8 is unreadable' in result.stderr
  variables, step = final(workdir)
  assert step == 8
  assert_identical(variables, reference[1])
  assert sorted(n for n in os.listdir(ckpts) if 'unreadable' in n) == [
      '8.unreadable', '8.unreadable.1', '9.unreadable']


def test_a_deleted_metadata_file_is_skipped_by_readers(reference, tmp_path):
  workdir = _copy(reference[0], tmp_path / 'w')
  os.remove(workdir / 'checkpoints' / '8' / 'state' / '_METADATA')
  _, step = final(workdir)
  assert step == 6
  with pytest.raises(checkpointing.CheckpointError, match='step 8'):
    final(workdir, which='8')


def test_a_changed_config_is_refused_before_anything_is_written(reference, tmp_path):
  workdir = _copy(reference[0], tmp_path / 'w')
  before = {p: os.path.getmtime(p) for p in glob.glob(str(workdir / '**'), recursive=True)}
  config_before = (workdir / 'config.json').read_text()
  line = assert_one_line(train(workdir, '--config.model.name=hrnet_w18_small_v2',
                               '--config.model.num_classes=5', check=False))
  assert "model.name 'hrnet_w18_small_v1' -> 'hrnet_w18_small_v2'" in line
  assert 'model.num_classes 19 -> 5' in line
  assert (workdir / 'config.json').read_text() == config_before
  after = {p: os.path.getmtime(p) for p in glob.glob(str(workdir / '**'), recursive=True)}
  assert after == before


@pytest.mark.slow
def test_a_full_disk_stops_training_and_a_restart_ends_bit_identical(reference, tmp_path):
  # Checkpoints of this model are 12 MB: two fit in 30 MB, the third does not.
  with _tmpfs(tmp_path / 'disk', '30m') as disk:
    result = train(disk / 'w', '--config.checkpoint.every_steps=2', check=False)
    line = assert_one_line(result, 'No space left on device', 'step 4')
    assert 'Last good checkpoint: step 4' in line
    assert len(result.stderr.splitlines()) < 200   # not the 2158 lines of before
    ckpts = disk / 'w' / 'checkpoints'
    assert sorted(os.listdir(ckpts)) == ['2', '4']   # no tmp directory left behind
    assert not os.path.exists(disk / 'w' / 'final_metrics.json')
    # The user frees space; the same command resumes from step 4.
    subprocess.run(['mount', '-o', 'remount,size=200m', str(disk)], check=True)
    result = train(disk / 'w', '--config.checkpoint.every_steps=2')
    assert 'Resumed from' in result.stderr and 'step 4.' in result.stderr
    variables, step = final(disk / 'w')
  assert step == 8
  assert_identical(variables, reference[1])


def _wait_for(path, text, process, timeout=600):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if process.poll() is not None:
      raise AssertionError(f'exited early: {open(path).read()[-3000:]}')
    if os.path.exists(path) and text in open(path).read():
      return
    time.sleep(0.2)
  raise AssertionError(f'{text!r} never appeared in {path}')


def _start(args, log, devices=2, **extra_env):
  return subprocess.Popen([sys.executable, os.path.join(ROOT, 'train.py'), *args], cwd=ROOT,
                          env=env(devices, **extra_env), stdout=subprocess.DEVNULL,
                          stderr=open(log, 'w'))


@pytest.mark.slow
def test_ctrl_c_saves_like_sigterm_and_the_restart_ends_bit_identical(reference, tmp_path):
  workdir, log = tmp_path / 'w', tmp_path / 'log'
  process = _start([*TINY, f'--workdir={workdir}'], log)
  _wait_for(log, '[4] train/', process)
  process.send_signal(signal.SIGINT)
  assert process.wait(timeout=600) == 0, open(log).read()[-3000:]
  text = open(log).read()
  assert 'Traceback' not in text and 'KeyboardInterrupt' not in text
  stopped = int(text.split('SIGINT at step ')[1].split(':')[0])
  assert 4 <= stopped < 8 and str(stopped) in os.listdir(workdir / 'checkpoints')
  train(workdir)
  variables, step = final(workdir)
  assert step == 8
  assert_identical(variables, reference[1])


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _two_processes(workdir, logs):
  port = _free_port()
  # No persistent compilation cache: a later launch whose processes load the cached
  # collective programs unevenly timed out in gloo's context set-up here.
  return [_start([*TINY, f'--workdir={workdir}', f'--coordinator_address=127.0.0.1:{port}',
                  '--num_processes=2', f'--process_id={i}'], logs[i], devices=1,
                 JAX_ENABLE_COMPILATION_CACHE='false', HRNET_JAX_COMPILATION_CACHE='none',
                 JAX_COMPILATION_CACHE_DIR='')
          for i in range(2)]


@pytest.mark.slow
def test_sigterm_to_one_of_two_processes_saves_the_same_step_on_both(tmp_path):
  reference_dir = tmp_path / 'reference'
  processes = _two_processes(reference_dir, [tmp_path / 'r0', tmp_path / 'r1'])
  assert [p.wait(timeout=900) for p in processes] == [0, 0]
  want, _ = final(reference_dir)

  workdir, logs = tmp_path / 'w', [tmp_path / 'l0', tmp_path / 'l1']
  processes = _two_processes(workdir, logs)
  _wait_for(logs[0], '[3] train/', processes[0])
  processes[1].send_signal(signal.SIGTERM)           # one host is preempted
  assert [p.wait(timeout=600) for p in processes] == [0, 0]
  texts = [open(l).read() for l in logs]
  stops = [int(t.split('SIGTERM at step ')[1].split(':')[0]) for t in texts]
  assert stops[0] == stops[1] < 8, stops            # the same step on both hosts
  assert str(stops[0]) in os.listdir(workdir / 'checkpoints')
  processes = _two_processes(workdir, [tmp_path / 'm0', tmp_path / 'm1'])
  assert [p.wait(timeout=900) for p in processes] == [0, 0]
  got, step = final(workdir)
  assert step == 8
  assert_identical(got, want)

"""Interrupted training (SIGTERM, kill -9) resumes to bit-identical parameters.

Each run is a child process (tests/train_driver.py) on 2 simulated CPU devices with a
tiny model, 8 steps, checkpoints every 3 steps: one uninterrupted run, and one run
preempted by SIGTERM, restarted, killed with -9, restarted again. Slow (about 20-40 s per child: JAX,
TensorFlow and compilation start-up), which no in-process shortcut can avoid: kill -9
needs a process, and TensorFlow must stay out of the PyTorch test process.
"""
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from hrnet_jax import checkpointing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRIVER = os.path.join(ROOT, 'tests', 'train_driver.py')


def child_env(devices=2):
  env = dict(os.environ)
  env['JAX_PLATFORMS'] = 'cpu'
  env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={devices}'
  env.setdefault('JAX_COMPILATION_CACHE_DIR',
                 os.path.join(os.path.expanduser('~'), '.cache', 'hrnet-jax-tests-xla'))
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  return env


def train(workdir, *args, devices=2, check=True):
  result = subprocess.run([sys.executable, DRIVER, str(workdir), *args], env=child_env(devices),
                          capture_output=True, text=True, timeout=900)
  if check and result.returncode != 0:
    raise AssertionError(f'training exited with {result.returncode}:\n{result.stderr[-4000:]}')
  return result


def final_variables(workdir):
  variables, meta = checkpointing.load_model(str(workdir))
  return variables, meta['step']


def assert_identical(a, b):
  flat_a = jax.tree_util.tree_leaves_with_path(a)
  flat_b = jax.tree.leaves(b)
  assert len(flat_a) == len(flat_b) > 0
  for (path, x), y in zip(flat_a, flat_b):
    np.testing.assert_array_equal(x, y, err_msg=jax.tree_util.keystr(path))


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('straight')
  train(workdir)
  return final_variables(workdir)


@pytest.mark.slow
def test_sigterm_and_kill_9_then_restarts_are_bit_identical(uninterrupted, tmp_path):
  # Preemption at step 4: a checkpoint at the current step, exit status 0.
  first = train(tmp_path, '--signal', 'term', '--at', '4')
  assert first.returncode == 0
  assert 'SIGTERM at step 4' in first.stderr
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['3', '4']
  assert 'Initialised the state (seed' in first.stderr
  # Restart, then kill -9 at step 7 (after the step-6 checkpoint is on disk).
  second = train(tmp_path, '--signal', 'kill', '--at', '7', check=False)
  assert second.returncode == -9, second.stderr[-3000:]
  assert 'Resumed from' in second.stderr and 'step 4.' in second.stderr
  # A restart restores into the abstract state: no initialiser is compiled or run.
  assert 'Initialised the state' not in second.stderr
  # Restart again: from step 6 to the end.
  third = train(tmp_path)
  assert 'Resumed from' in third.stderr and 'step 6.' in third.stderr
  variables, step = final_variables(tmp_path)
  assert step == 8 == uninterrupted[1]
  assert_identical(variables, uninterrupted[0])


@pytest.mark.slow
def test_non_finite_loss_stops_naming_the_step_and_keeps_the_good_checkpoint(tmp_path):
  result = train(tmp_path, '--set', 'optimizer.learning_rate=1e30',
                 '--set', 'checkpoint.every_steps=1', check=False)
  assert result.returncode != 0
  message = [l for l in result.stderr.splitlines() if 'non-finite loss' in l]
  assert message, result.stderr[-3000:]
  bad_step = int(message[-1].split(' at step ')[1].split(';')[0])
  variables, step = final_variables(tmp_path)
  assert step == bad_step - 1
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(variables))

"""2 processes x 4 CPU devices (jax.distributed on 127.0.0.1, gloo) equal 1 x 8 devices.

Both runs train the tiny config for 5 steps through train_and_evaluate (per-process
loaders, global batches assembled across processes, SyncBN over both processes,
Orbax checkpoints written by both) and the final checkpoints are compared. Slow
(three child processes with JAX and TensorFlow start-up).
"""
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tests'))
from test_train_resume import DRIVER, child_env, final_variables, train  # pylint: disable=g-import-not-at-top,wrong-import-position

# A tiny learning rate. Summation order differs between gloo and in-process all-reduces
# (~1e-7 relative), and the segmentation init (conv weights normal(0.001), each conv
# followed by BatchNorm) makes the stem gradients huge relative to the weights: at
# lr 1e-3 a 2.5e-6 gradient difference grows to 50% in four steps on ONE process with
# 1 vs 8 devices alone. At 1e-6 the run stays in the linear regime, and the per-step
# losses still check that every global batch is assembled across the two processes.
# BN momentum 0.1 makes the running statistics reflect each global batch (SyncBN).
SETTINGS = ('--set', 'num_train_steps=5', '--set', 'global_batch_size=8',
            '--set', 'checkpoint.every_steps=5', '--set', 'optimizer.learning_rate=1e-6',
            '--set', 'model.bn_momentum=0.1', '--set', 'log_every_steps=1')


def _losses(log):
  """{step: loss} from the metric lines of process 0's log."""
  out = {}
  for line in log.splitlines():
    if 'train/loss=' in line and '] [' in line:
      step = int(line.split('] [')[1].split(']')[0])
      out[step] = float(line.split('train/loss=')[1].split(',')[0])
  return out


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_equal_one_process(tmp_path):
  single = tmp_path / 'single'
  single_log = train(single, *SETTINGS, devices=8).stderr

  multi = tmp_path / 'multi'
  port = _free_port()
  children = [subprocess.Popen(
      [sys.executable, DRIVER, str(multi), *SETTINGS, '--num_processes', '2',
       '--process_id', str(i), '--port', str(port)],
      env=child_env(4), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in range(2)]
  outputs = [c.communicate(timeout=900) for c in children]
  for c, (_, err) in zip(children, outputs):
    assert c.returncode == 0, err[-4000:]
  assert 'process 0 of 2' in outputs[0][1] and 'process 1 of 2' in outputs[1][1]

  want_losses = _losses(single_log)
  got_losses = _losses(outputs[0][1])
  assert sorted(want_losses) == [1, 2, 3, 4, 5] and sorted(got_losses) == [1, 2, 3, 4, 5]
  assert not _losses(outputs[1][1])   # only process 0 writes metrics
  for step in want_losses:
    np.testing.assert_allclose(got_losses[step], want_losses[step], rtol=1e-5)

  got, got_step = final_variables(multi)
  want, want_step = final_variables(single)
  assert got_step == want_step == 5
  scale = max(float(np.abs(x).max()) for x in jax.tree.leaves(want))
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * scale,
                               err_msg=jax.tree_util.keystr(path))

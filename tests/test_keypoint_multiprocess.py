"""Keypoint evaluation is exact over hosts: 2 processes x 4 CPU devices give the same
COCO results json and AP as 1 process x 8 devices on the same checkpoint.

A short pose run on the tiny synthetic people makes the checkpoint; eval.py's `run`
then evaluates it in both layouts (jax.distributed on 127.0.0.1, gloo). The validation
people (15) are not a multiple of the global eval batch (8), so both layouts evaluate
padded batches, and each process sees only its own share of the people: the predictions must
be gathered across processes and the padding dropped. Slow (child processes).
"""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tests'))
from test_train_multiprocess import _free_port  # pylint: disable=g-import-not-at-top,wrong-import-position
from test_train_resume import DRIVER, child_env, train  # pylint: disable=g-import-not-at-top,wrong-import-position

POSE = ('--config', 'quickstart_pose',
        '--set', 'data.name=hrnet_synthetic_pose_tiny', '--set', 'global_batch_size=8',
        '--set', 'num_train_steps=6', '--set', 'checkpoint.every_steps=6',
        '--set', 'eval.global_batch_size=8',
        '--set', 'optimizer.step_boundaries=()', '--set', 'log_every_steps=2')


def _evaluate_two_processes(checkpoint, workdir):
  port = _free_port()
  children = [subprocess.Popen(
      [sys.executable, DRIVER, str(workdir), *POSE, '--evaluate', str(checkpoint),
       '--num_processes', '2', '--process_id', str(i), '--port', str(port)],
      env=child_env(4), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in range(2)]
  outputs = [c.communicate(timeout=900) for c in children]
  for c, (_, err) in zip(children, outputs):
    assert c.returncode == 0, err[-4000:]
  return outputs


def _results(workdir):
  with open(workdir / 'eval_results.json') as f:
    summary = json.load(f)
  with open(summary['results_file']) as f:
    people = json.load(f)
  return summary, sorted(people, key=lambda r: (r['image_id'], r['score']))


@pytest.mark.slow
def test_two_processes_evaluate_exactly_as_one(tmp_path):
  run = tmp_path / 'run'
  train(run, *POSE, devices=8)
  single, multi = tmp_path / 'single', tmp_path / 'multi'
  result = train(single, *POSE, '--evaluate', str(run), devices=8)
  outputs = _evaluate_two_processes(run, multi)
  assert 'process 0 of 2' in outputs[0][1] and 'process 1 of 2' in outputs[1][1]
  # Only process 0 writes the report.
  assert 'results in' in outputs[0][0] and 'results in' not in outputs[1][0]

  want_summary, want_people = _results(single)
  got_summary, got_people = _results(multi)
  assert want_summary['step'] == got_summary['step'] == 6
  # Every validation person once, none of the padding (the split's people are not a
  # multiple of the global batch, so the last batch is padded).
  assert want_summary['num_examples'] == got_summary['num_examples']
  assert want_summary['num_examples'] % 8 != 0, result.stdout[-2000:]
  assert 0 < len(got_people) == len(want_people)
  assert [p['image_id'] for p in got_people] == [p['image_id'] for p in want_people]
  for got, want in zip(got_people, want_people):
    assert got['keypoints'] == pytest.approx(want['keypoints'], rel=1e-6, abs=1e-4)
    assert got['score'] == pytest.approx(want['score'], rel=1e-6)
  stats = [k for k, v in want_summary.items() if k.startswith('AP') or k.startswith('AR')]
  assert 'AP' in stats
  for k in stats:
    assert got_summary[k] == pytest.approx(want_summary[k], abs=1e-9), k

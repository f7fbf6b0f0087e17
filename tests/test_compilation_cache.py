"""The persistent compilation cache: where it goes, and that a second run compiles nothing new."""
import json
import os

import pytest

from hrnet_jax import compilation_cache
import test_faults as faults   # the tiny quickstart command line and its subprocess runner


def test_flag_then_project_env_then_jax_env_then_default(monkeypatch, tmp_path):
  monkeypatch.delenv(compilation_cache.ENV_VAR, raising=False)
  monkeypatch.delenv('JAX_COMPILATION_CACHE_DIR', raising=False)
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
  assert compilation_cache.resolve() == str(tmp_path / 'xdg' / 'hrnet-jax' / 'xla')
  monkeypatch.setenv('JAX_COMPILATION_CACHE_DIR', str(tmp_path / 'jax'))
  assert compilation_cache.resolve() == str(tmp_path / 'jax')
  monkeypatch.setenv(compilation_cache.ENV_VAR, str(tmp_path / 'project'))
  assert compilation_cache.resolve() == str(tmp_path / 'project')
  assert compilation_cache.resolve(str(tmp_path / 'flag')) == str(tmp_path / 'flag')
  for off in ('none', 'None', 'off', ''):
    assert compilation_cache.resolve(off) is None
  monkeypatch.setenv(compilation_cache.ENV_VAR, 'none')
  assert compilation_cache.resolve() is None


def _entries(cache):
  return sorted(p for p in os.listdir(cache) if not p.startswith('.'))


@pytest.mark.slow
def test_second_run_in_a_new_workdir_loads_every_program_from_the_cache(tmp_path):
  # Every program is written, however fast it compiled: which small programs cross a time
  # threshold depends on the machine's load, and the comparison below must not.
  os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
  cache = tmp_path / 'cache'
  evaluate = ('--config.eval.every_steps=8', *faults.EVAL)
  first = faults.train(tmp_path / 'run1', f'--compilation_cache={cache}', *evaluate)
  written = _entries(cache)
  assert len(written) >= 2, (written, first.stderr[-2000:])   # at least init and the step
  faults.train(tmp_path / 'run2', f'--compilation_cache={cache}', *evaluate)
  assert _entries(cache) == written      # nothing compiled that was not already there
  m1 = json.loads((tmp_path / 'run1' / 'final_metrics.json').read_text())
  m2 = json.loads((tmp_path / 'run2' / 'final_metrics.json').read_text())
  m1.pop('eval/seconds', None), m2.pop('eval/seconds', None)
  assert m1 == m2


def test_off_writes_nothing(tmp_path):
  cache = tmp_path / 'cache'
  result = faults.run('-m', 'hrnet_jax.export', '--compilation_cache=none', '--help')
  assert result.returncode == 0, result.stderr[-2000:]
  assert not cache.exists()

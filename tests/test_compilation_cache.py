"""The persistent compilation cache: where it goes, and that a second run compiles nothing new."""
import json
import os
import subprocess
import sys

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
def test_second_run_in_a_new_workdir_loads_every_program_from_the_cache(tmp_path, monkeypatch):
  # Every program is written, however fast it compiled: which small programs cross a time
  # threshold depends on the machine's load, and the comparison below must not.
  monkeypatch.setenv('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
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


def _compile_something(setting, env_dir):
  """A fresh process that enables the cache with `setting` and compiles one program."""
  code = ('import sys, jax, jax.numpy as jnp\n'
          'from hrnet_jax import compilation_cache\n'
          'print(compilation_cache.enable(None if sys.argv[1] == "-" else sys.argv[1]))\n'
          'jax.jit(lambda x: jnp.sin(x) * 3)(jnp.ones(7)).block_until_ready()\n')
  env = faults.env(1, JAX_COMPILATION_CACHE_DIR=str(env_dir),
                   JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')
  env.pop(compilation_cache.ENV_VAR, None)
  result = subprocess.run([sys.executable, '-c', code, setting], env=env, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  return result.stdout.strip()


@pytest.mark.slow
def test_enable_writes_where_it_is_told_and_none_writes_nothing(tmp_path):
  env_dir, flag_dir = tmp_path / 'env', tmp_path / 'flag'
  assert _compile_something(str(flag_dir), env_dir) == str(flag_dir)
  assert _entries(flag_dir) and not env_dir.exists()
  assert _compile_something('-', env_dir) == str(env_dir)
  assert _entries(env_dir)
  off = tmp_path / 'off'
  assert _compile_something('none', off) == 'None'
  assert not off.exists()

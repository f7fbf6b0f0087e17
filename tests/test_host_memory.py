"""hrnet_jax.host_memory: huge pages for XLA:CPU's buffers, by restarting the command once."""
import os
import subprocess
import sys
import textwrap

import pytest

from hrnet_jax import host_memory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HUGE_PAGES_HERE = host_memory.glibc_has_the_tunable() and host_memory.kernel_offers_huge_pages()

# A program whose temporaries (64 MB each) are above glibc's largest mmap threshold;
# prints the minor page faults of each run after the first, and the output's checksum.
_FAULTS = r"""
import resource
import jax, jax.numpy as jnp

@jax.jit
def f(x):
  y = jnp.sin(x) * 2 + 1
  z = jnp.cos(y)[::-1] + y
  return jnp.sum(z * y[::-1], axis=0)

x = jnp.linspace(0, 1, 4096 * 4096, dtype=jnp.float32).reshape(4096, 4096)
out = f(x).block_until_ready()
faults = []
for _ in range(6):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  out = f(x).block_until_ready()
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(','.join(map(str, faults)), float(jnp.sum(out)))
"""


def _env(**changes):
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)
  env.pop('XLA_FLAGS', None)
  env.pop('GLIBC_TUNABLES', None)
  env.pop(host_memory.ENV_VAR, None)
  env.update(changes)
  return env


def _python(args, env, cwd=ROOT):
  done = subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True,
                        text=True, timeout=300, check=False)
  return done


@pytest.mark.skipif(not HUGE_PAGES_HERE, reason='needs glibc >= 2.35 and THP')
def test_the_tunable_removes_most_page_faults_of_each_run():
  runs = {}
  for name, env in [('plain', _env()), ('huge', _env(GLIBC_TUNABLES=host_memory.TUNABLE))]:
    done = _python(['-c', _FAULTS], env)
    assert done.returncode == 0, done.stderr[-3000:]
    faults, checksum = done.stdout.split()[-2:]
    runs[name] = ([int(v) for v in faults.split(',')], float(checksum))
  plain, huge = runs['plain'][0], runs['huge'][0]
  # 4 KiB pages: glibc maps each 64 MB block afresh, ~16k faults per block (82k a run).
  assert min(plain) > 20_000, plain
  # 2 MiB pages: 512x fewer (the kernel falls back to small pages when it has no huge
  # page free, so not every run, but most).
  assert sorted(huge)[len(huge) // 2] < 5_000, huge
  assert runs['huge'][1] == runs['plain'][1]


_SHOW = textwrap.dedent("""
    import os, sys
    from hrnet_jax import host_memory
    print('start', os.environ.get('GLIBC_TUNABLES', '-'), sys.argv[1:], flush=True)
    host_memory.reexec_with_huge_pages()
    print('running', os.environ.get('GLIBC_TUNABLES', '-'), sys.argv[1:])
    """)


@pytest.mark.skipif(not HUGE_PAGES_HERE, reason='needs glibc >= 2.35 and THP')
def test_restarts_once_with_the_same_arguments(tmp_path):
  (tmp_path / 'show_tunables.py').write_text(_SHOW)
  env = _env(PYTHONPATH=f'{ROOT}:{tmp_path}', GLIBC_TUNABLES='glibc.malloc.arena_max=4')
  for args in (['-m', 'show_tunables', 'a', '--b=c'],
               [str(tmp_path / 'show_tunables.py'), 'a', '--b=c']):
    done = _python(args, env, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    tunables = f'glibc.malloc.arena_max=4:{host_memory.TUNABLE}'
    assert done.stdout.splitlines() == [
        "start glibc.malloc.arena_max=4 ['a', '--b=c']",
        f"start {tunables} ['a', '--b=c']",
        f"running {tunables} ['a', '--b=c']"], done.stdout


def test_off_or_an_accelerator_means_no_restart(tmp_path):
  (tmp_path / 'show_tunables.py').write_text(_SHOW)
  for env in (_env(HRNET_JAX_HUGE_PAGES='off'), _env(JAX_PLATFORMS='cuda')):
    done = _python([str(tmp_path / 'show_tunables.py')], env, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == ['start - []', 'running - []'], done.stdout


def test_train_py_names_a_bad_setting_in_one_line(tmp_path):
  done = _python(['train.py', '--config=configs/quickstart.py', f'--workdir={tmp_path}'],
                 _env(HRNET_JAX_HUGE_PAGES='always'))
  assert done.returncode == 2
  lines = [line for line in done.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and "HRNET_JAX_HUGE_PAGES='always'" in lines[0], done.stderr[-2000:]


@pytest.mark.parametrize('platforms,expected', [('cpu', True), ('cuda', False),
                                                ('tpu,cpu', False), ('cpu,cuda', True)])
def test_jax_platforms_decides_the_backend(monkeypatch, platforms, expected):
  monkeypatch.setenv('JAX_PLATFORMS', platforms)
  assert host_memory.backend_is_cpu() is expected


def test_an_installed_accelerator_plugin_means_not_the_cpu(monkeypatch):
  class Dist:
    metadata = {'Name': 'jax-cuda12-plugin'}
  monkeypatch.delenv('JAX_PLATFORMS', raising=False)
  monkeypatch.setattr(host_memory.importlib.metadata, 'distributions', lambda: [Dist()])
  assert host_memory.backend_is_cpu() is False
  monkeypatch.setattr(host_memory.importlib.metadata, 'distributions', lambda: [])
  assert host_memory.backend_is_cpu() is True


@pytest.mark.parametrize('text,expected', [('always [madvise] never\n', True),
                                           ('[always] madvise never\n', True),
                                           ('always madvise [never]\n', False),
                                           (None, False)])
def test_the_kernel_mode_is_read(tmp_path, text, expected):
  path = tmp_path / 'enabled'
  if text is not None:
    path.write_text(text)
  assert host_memory.kernel_offers_huge_pages(str(path)) is expected


def test_a_process_with_the_tunable_is_left_alone(monkeypatch):
  monkeypatch.setenv('GLIBC_TUNABLES', f'glibc.malloc.arena_max=2:{host_memory.TUNABLE}')
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')
  assert host_memory.tunable_is_set() and not host_memory.wanted()
  monkeypatch.setenv('GLIBC_TUNABLES', 'glibc.malloc.arena_max=2')
  assert not host_memory.tunable_is_set()
  assert host_memory.environment_with_tunable()['GLIBC_TUNABLES'] == (
      f'glibc.malloc.arena_max=2:{host_memory.TUNABLE}')


@pytest.mark.parametrize('value, expected', [('on', True), ('', True), (' AUTO ', True),
                                             ('Off', False)])
def test_the_setting_is_read(monkeypatch, value, expected):
  monkeypatch.setenv(host_memory.ENV_VAR, value)
  assert host_memory.enabled() is expected


def test_a_bad_setting_names_every_accepted_value(monkeypatch):
  monkeypatch.setenv(host_memory.ENV_VAR, 'yes')
  with pytest.raises(ValueError) as e:
    host_memory.enabled()
  assert all(words in str(e.value) for words in ("'yes'", 'use on', 'auto', 'or off'))

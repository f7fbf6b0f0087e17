"""XLA:CPU compile options (hrnet_jax.xla_cpu): what they change and that results stay."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrnet_jax import xla_cpu
from hrnet_jax.models import layers
from hrnet_jax.training import sharding

import test_train_step as tts


def test_options_follow_the_backend_and_the_environment(monkeypatch):
  off = {'xla_disable_hlo_passes': 'fusion'}
  monkeypatch.delenv(xla_cpu.ENV_VAR, raising=False)
  # The model cuts its residual chains itself, so its programs keep XLA's fusion.
  assert xla_cpu.compiler_options('cpu') is None
  monkeypatch.setenv(xla_cpu.ENV_VAR, 'Off')
  assert xla_cpu.compiler_options('cpu') == off
  assert xla_cpu.compiler_options('gpu') is None
  assert xla_cpu.compiler_options('tpu') is None
  monkeypatch.setenv(xla_cpu.ENV_VAR, 'on')
  assert xla_cpu.compiler_options('cpu') is None
  # The state initialiser (threefry only) compiles unoptimised on a CPU, whatever the model.
  assert xla_cpu.initializer_options('cpu') == {'xla_backend_optimization_level': 0}
  assert xla_cpu.initializer_options('gpu') is None


def test_a_bad_setting_is_one_clear_error(monkeypatch):
  monkeypatch.setenv(xla_cpu.ENV_VAR, 'fast')
  with pytest.raises(ValueError, match=f'{xla_cpu.ENV_VAR}=.fast. is not understood'):
    xla_cpu.compiler_options('cpu')


def _residual_chain(kernels, x, block_output):
  """Residual blocks block_output(conv(h) * s + b + h): HRNet's branch in miniature."""
  h = x
  for k in kernels:
    y = jax.lax.conv_general_dilated(h, k, (1, 1), ((1, 1), (1, 1)),
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    h = block_output(y * 0.5 + 0.1 + h)
  return jnp.sum(h * h)


def _largest_operand_count(hlo_text):
  """The most operands any instruction of the optimised module reads."""
  counts = [len(re.findall(r'%[\w.\-]+', args))
            for args in re.findall(r'= \S+ (?:fusion|transpose|copy)\((.*?)\)', hlo_text)]
  return max(counts)


def test_the_residual_output_stops_fusion_from_recomputing_the_chain(monkeypatch):
  monkeypatch.delenv(xla_cpu.ENV_VAR, raising=False)
  blocks = 8
  rng = np.random.default_rng(0)
  kernels = [jnp.asarray(rng.standard_normal((3, 3, 8, 8)) * 0.1, jnp.float32)
             for _ in range(blocks)]
  x = jnp.asarray(rng.standard_normal((1, 16, 16, 8)), jnp.float32)

  def grad_hlo(block_output, options=None):
    grad = jax.grad(lambda k, x: _residual_chain(k, x, block_output))
    compiled = jax.jit(grad).lower(kernels, x).compile(compiler_options=options)
    return compiled.as_text(), compiled(kernels, x)

  plain_hlo, plain = grad_hlo(jax.nn.relu)
  cut_hlo, cut = grad_hlo(layers.residual_output)
  monkeypatch.setenv(xla_cpu.ENV_VAR, 'off')
  unfused_hlo, unfused = grad_hlo(jax.nn.relu, xla_cpu.compiler_options('cpu'))
  # With XLA's fusion and a plain ReLU some instruction reads (nearly) every block's
  # values: the residual chain is recomputed inside it. With the model's block output
  # each fusion reads its own block's values only, as it does without fusion at all.
  assert _largest_operand_count(plain_hlo) >= blocks
  assert _largest_operand_count(cut_hlo) <= 4
  assert _largest_operand_count(unfused_hlo) <= 3
  assert ' fusion(' in cut_hlo   # fusion itself still runs
  # The cut is an identity: the same gradients bit for bit.
  for got, want in zip(cut, plain):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
  np.testing.assert_allclose(np.stack([np.asarray(g) for g in unfused]),
                             np.stack([np.asarray(g) for g in plain]), rtol=2e-6, atol=1e-6)


def test_the_residual_output_is_exactly_a_relu():
  values = jnp.asarray([-np.inf, -3.5, -0.0, 0.0, 1e-42, 1e-30, 0.75, 3e38, np.inf, np.nan],
                       jnp.float32)
  for dtype in (jnp.float32, jnp.bfloat16):
    v = values.astype(dtype)
    got = np.asarray(jax.jit(layers.residual_output)(v)).astype(np.float32)
    want = np.asarray(jax.nn.relu(v)).astype(np.float32)
    np.testing.assert_array_equal(got, want)   # NaN in the same place, infinities kept
  finite = values[1:-2]
  weights = jnp.arange(1.0, finite.size + 1)
  np.testing.assert_array_equal(
      jax.grad(lambda v: jnp.sum(layers.residual_output(v) * weights))(finite),
      jax.grad(lambda v: jnp.sum(jax.nn.relu(v) * weights))(finite))


def test_train_step_equals_the_one_with_xla_fusion(monkeypatch):
  """One step of the real train step (small_v1, SGD, BN) with and without fusion."""
  config = tts.tiny_config()
  mesh = sharding.make_mesh(config.mesh, devices=jax.devices()[:1])
  monkeypatch.setenv(xla_cpu.ENV_VAR, 'on')
  with_fusion = tts._run(config, mesh, tts.tiny_batch())
  monkeypatch.setenv(xla_cpu.ENV_VAR, 'off')
  without = tts._run(config, mesh, tts.tiny_batch())
  np.testing.assert_allclose(without['loss'], with_fusion['loss'], rtol=1e-6)
  tts.assert_trees_close(without['grads'], with_fusion['grads'], rtol=1e-5)
  tts.assert_trees_close(without['params'], with_fusion['params'], rtol=1e-5)
  tts.assert_trees_close(without['batch_stats'], with_fusion['batch_stats'], rtol=1e-5)

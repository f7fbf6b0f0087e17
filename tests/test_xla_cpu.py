"""XLA:CPU compile options (hrnet_jax.xla_cpu): what they change and that results stay."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hrnet_jax
from hrnet_jax import xla_cpu
from hrnet_jax.training import sharding

import test_train_step as tts


def test_options_follow_the_backend_the_model_and_the_environment(monkeypatch):
  deep = hrnet_jax.create_model('hrnet_w48', head='seg', num_classes=19)
  small = hrnet_jax.create_model('hrnet_w18_small_v2', head='seg', num_classes=19)
  # Blocks on the highest-resolution branch, stem to head, from the official configs:
  # stage-1 Bottlenecks + modules x Basic blocks of stages 2-4.
  assert xla_cpu.residual_chain_length(deep) == 4 + 1 * 4 + 4 * 4 + 3 * 4
  assert xla_cpu.residual_chain_length(small) == 2 + 1 * 2 + 3 * 2 + 2 * 2
  assert xla_cpu.residual_chain_length(
      hrnet_jax.create_model('hrnet_w18_small_v1', head='seg', num_classes=19)) == 7
  assert xla_cpu.residual_chain_length(object()) is None
  off = {'xla_disable_hlo_passes': 'fusion'}
  monkeypatch.delenv(xla_cpu.ENV_VAR, raising=False)
  assert xla_cpu.compiler_options(deep, 'cpu') == off
  assert xla_cpu.compiler_options(small, 'cpu') is None
  assert xla_cpu.compiler_options(None, 'cpu') is None
  assert xla_cpu.compiler_options(deep, 'gpu') is None
  assert xla_cpu.compiler_options(deep, 'tpu') is None
  monkeypatch.setenv(xla_cpu.ENV_VAR, 'on')
  assert xla_cpu.compiler_options(deep, 'cpu') is None
  monkeypatch.setenv(xla_cpu.ENV_VAR, 'Off')
  assert xla_cpu.compiler_options(small, 'cpu') == off
  assert xla_cpu.compiler_options(None, 'cpu') == off
  # The state initialiser (threefry only) compiles unoptimised on a CPU, whatever the model.
  assert xla_cpu.initializer_options('cpu') == {'xla_backend_optimization_level': 0}
  assert xla_cpu.initializer_options('gpu') is None


def test_a_bad_setting_is_one_clear_error(monkeypatch):
  monkeypatch.setenv(xla_cpu.ENV_VAR, 'fast')
  with pytest.raises(ValueError, match=f'{xla_cpu.ENV_VAR}=.fast. is not understood'):
    xla_cpu.compiler_options(None, 'cpu')


def _residual_chain(kernels, x):
  """Residual blocks relu(conv(h) * s + b + h): HRNet's branch in miniature."""
  h = x
  for k in kernels:
    y = jax.lax.conv_general_dilated(h, k, (1, 1), ((1, 1), (1, 1)),
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    h = jnp.maximum(y * 0.5 + 0.1 + h, 0.0)
  return jnp.sum(h * h)


def _largest_operand_count(hlo_text):
  """The most operands any instruction of the optimised module reads."""
  counts = [len(re.findall(r'%[\w.\-]+', args))
            for args in re.findall(r'= \S+ (?:fusion|transpose|copy)\((.*?)\)', hlo_text)]
  return max(counts)


def test_weight_gradient_copies_do_not_recompute_the_residual_chain(monkeypatch):
  monkeypatch.setenv(xla_cpu.ENV_VAR, 'off')
  blocks = 8
  rng = np.random.default_rng(0)
  kernels = [jnp.asarray(rng.standard_normal((3, 3, 8, 8)) * 0.1, jnp.float32)
             for _ in range(blocks)]
  x = jnp.asarray(rng.standard_normal((1, 16, 16, 8)), jnp.float32)
  grad = jax.grad(_residual_chain)
  fused = jax.jit(grad).lower(kernels, x).compile().as_text()
  ours = xla_cpu.jit(grad).lower(kernels, x).compile().as_text()
  # With XLA's fusion some instruction reads (nearly) every block's values: the
  # residual chain is recomputed inside it. Without, each op reads its own inputs.
  assert _largest_operand_count(fused) >= blocks
  assert _largest_operand_count(ours) <= 3
  np.testing.assert_allclose(
      np.stack([np.asarray(g) for g in xla_cpu.jit(grad)(kernels, x)]),
      np.stack([np.asarray(g) for g in jax.jit(grad)(kernels, x)]), rtol=2e-6, atol=1e-6)


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

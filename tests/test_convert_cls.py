"""Classification checkpoints: parity with timm for every variant, export back into timm.

timm keeps the official HRNet-Image-Classification names, so a timm state_dict is an
official classification checkpoint. Random weights (BN statistics included) go through
a file and the converter; the Flax logits and branch features must equal timm's.
"""
import chex
import jax
import numpy as np
import pytest
import timm
import torch

import hrnet_jax
from hrnet_jax import convert
from hrnet_jax.conversion import core

import convert_testlib as lib

SIZE = 64
TOL = 1e-4
# Compiling a full-width variant on CPU takes about a minute; one eager forward takes a
# few seconds. Only the small variant, used by several tests, is compiled.
JIT = {'hrnet_w18_small_v1'}


@pytest.fixture(autouse=True, scope='module')
def _one_torch_thread():
  with lib.torch_threads(1):
    yield


def _timm_model(variant, seed=0, **kwargs):
  torch.manual_seed(seed)
  net = timm.create_model(lib.timm_name(variant), **kwargs)
  calib = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed + 1))
  lib.randomize(net, net, calib, seed)
  return net


def _image(seed=2, shape=(1, SIZE, SIZE, 3)):
  return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _apply(model, variant, *args, **kwargs):
  fn = lambda v, x: model.apply(v, x, **kwargs)  # pylint: disable=unnecessary-lambda-assignment
  return (jax.jit(fn) if variant in JIT else fn)(*args)


def _close(ours, ref, what):
  ours, ref = np.asarray(ours), np.asarray(ref)
  assert ours.shape == ref.shape, what
  err = np.abs(ours - ref).max()
  assert err < TOL, f'{what}: max abs error {err:.2e} (reference scale {np.abs(ref).max():.1f})'


@pytest.mark.slow
@pytest.mark.parametrize('variant', list(hrnet_jax.VARIANTS))
def test_logits_and_features_equal_timm_and_export_loads_strictly(variant, tmp_path):
  net = _timm_model(variant)
  state = net.state_dict()
  path = tmp_path / f'{variant}.pth'
  torch.save(state, path)

  result = convert.convert(str(path))
  model, variables = result.model, result.variables
  assert (model.spec.name, model.head, model.num_classes) == (variant, 'cls', 1000)
  assert result.metadata['options']['upsample'] == 'nearest'
  assert result.metadata['options']['bn_momentum'] == 0.1
  assert result.ignored == {
      core.IGNORE_BN_COUNTER: [k for k in state if k.endswith('num_batches_tracked')]}
  x = _image()
  # One forward for both checks: the backbone's output is the 'features' representation.
  logits, inter = _apply(model, variant, variables, x, mutable=['intermediates'],
                         capture_intermediates=lambda mdl, _: mdl.name == 'backbone')
  feats = inter['intermediates']['backbone']['__call__'][0]
  timm_feats = timm.create_model(lib.timm_name(variant), features_only=True,
                                 feature_location='', out_indices=(1, 2, 3, 4))
  missing, _ = timm_feats.load_state_dict(state, strict=False)
  assert not missing
  with torch.no_grad():
    ref_logits = net(lib.nchw(x)).numpy()
    ref_feats = [lib.nhwc(f) for f in timm_feats.eval()(lib.nchw(x))]
  _close(logits, ref_logits, f'{variant} logits')
  assert len(feats) == 4
  for i, (ours, ref) in enumerate(zip(feats, ref_feats)):
    _close(ours, ref, f'{variant} branch {i}')

  # Back to PyTorch: the same tensors, bit for bit, and timm accepts them strictly.
  exported = convert.torch_state_dict(variables, result.metadata)
  assert list(exported) == list(state)   # the official module order, too
  for key, value in state.items():
    if not key.endswith('num_batches_tracked'):
      assert np.array_equal(exported[key], value.numpy()), key
  fresh = timm.create_model(lib.timm_name(variant))
  fresh.load_state_dict({k: torch.from_numpy(v) for k, v in exported.items()}, strict=True)


def test_ssld_checkpoint_has_no_head_conv_bias_and_still_matches(tmp_path):
  net = _timm_model('hrnet_w18_small_v1', seed=3, head_conv_bias=False)   # as hrnet_w*_ssld
  path = tmp_path / 'hrnet_w18_small_ssld.pth'
  torch.save(net.state_dict(), path)
  model, variables = convert.from_torch(str(path))
  assert dict(model.head_options) == {'head_conv_bias': False}
  assert 'bias' not in variables['params']['head']['final_conv']
  x = _image(4)
  with torch.no_grad():
    ref = net(lib.nchw(x)).numpy()
  _close(jax.jit(model.apply)(variables, x), ref, 'ssld logits')


def test_train_mode_moves_batch_stats_like_torch_momentum_0_1(tmp_path):
  net = _timm_model('hrnet_w18_small_v1', seed=5)
  torch.save(net.state_dict(), tmp_path / 'cls.pth')
  result = convert.convert(str(tmp_path / 'cls.pth'))
  x = _image(6, (2, SIZE, SIZE, 3))
  net.train()
  with torch.no_grad():
    ref_logits = net(lib.nchw(x)).numpy()
  step = jax.jit(lambda v, x: result.model.apply(v, x, train=True, mutable=['batch_stats']))
  logits, new = step(result.variables, x)
  _close(logits, ref_logits, 'train-mode logits')
  ours = convert.torch_state_dict({**result.variables, **new}, result.metadata)
  moved = 0
  for key, value in net.state_dict().items():
    if key.endswith(('running_mean', 'running_var')):
      err = np.abs(ours[key] - value.numpy()).max()
      assert err < 1e-5, f'{key}: {err:.2e}'
      moved += 1
  assert moved == 2 * sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())


def test_features_head_from_a_timm_features_only_file(tmp_path):
  net = _timm_model('hrnet_w18_small_v1', seed=7)
  feats_net = timm.create_model('hrnet_w18_small', features_only=True, feature_location='',
                                out_indices=(1, 2, 3, 4)).eval()
  feats_net.load_state_dict(net.state_dict(), strict=False)
  torch.save(feats_net.state_dict(), tmp_path / 'backbone.pth')
  result = convert.convert(str(tmp_path / 'backbone.pth'))
  assert (result.model.head, result.metadata['num_classes']) == ('features', None)
  x = _image(8)
  with torch.no_grad():
    ref = [lib.nhwc(f) for f in feats_net(lib.nchw(x))]
  ours = jax.jit(result.model.apply)(result.variables, x)
  assert len(ours) == 4
  for i, (a, b) in enumerate(zip(ours, ref)):
    _close(a, b, f'features {i}')

  # The full classification file gives the same backbone with --head features; its head
  # tensors are listed as dropped on purpose, not silently lost.
  torch.save(net.state_dict(), tmp_path / 'cls.pth')
  as_features = convert.convert(str(tmp_path / 'cls.pth'), head='features')
  dropped = as_features.ignored[core.IGNORE_TASK_HEAD]
  assert set(dropped) == {k for k in net.state_dict() if k not in feats_net.state_dict()
                          and not k.endswith('num_batches_tracked')}
  chex.assert_trees_all_equal(as_features.variables, result.variables)


def test_classification_repo_containers_and_dataparallel_prefix(tmp_path):
  net = _timm_model('hrnet_w18_small_v1', seed=9)
  state = net.state_dict()
  torch.save(state, tmp_path / 'bare.pth')
  # HRNet-Image-Classification's checkpoint.pth.tar, saved from a DataParallel model.
  wrapped = {'epoch': 42, 'model': 'cls_hrnet', 'perf': 0.723,
             'state_dict': {f'module.{k}': v for k, v in state.items()},
             'optimizer': {'state': {}, 'param_groups': [{'lr': 0.05, 'params': [0, 1]}]}}
  torch.save(wrapped, tmp_path / 'checkpoint.pth.tar')
  bare = convert.convert(str(tmp_path / 'bare.pth'))
  tar = convert.convert(str(tmp_path / 'checkpoint.pth.tar'))
  assert tar.dropped == ['epoch', 'model', 'perf', 'optimizer']
  assert tar.metadata['torch_layout'] == 'plain'
  chex.assert_trees_all_equal(tar.variables, bare.variables)

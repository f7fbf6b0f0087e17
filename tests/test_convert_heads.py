"""Segmentation (v1.1 and OCR), pose and pyramid checkpoints against PyTorch references.

References: timm's HRNet backbone with the family's fusion (bilinear to the exact size
for the segmentation code) plus the official head definitions (convert_testlib),
saved in the files' official layouts: `model.` + `loss.criterion.weight` in a
`checkpoint.pth.tar`, OCR keys, DataParallel `module.`, mmdetection's
`backbone.`/`neck.` with detector heads, legacy `_torch04` serialisation.
"""
import functools

import chex
import jax
import numpy as np
import pytest
import torch

from hrnet_jax import convert
from hrnet_jax.conversion import core

import convert_testlib as lib

VARIANT = 'hrnet_w18_small_v1'
TOL = 1e-4
ODD = (97, 193)    # 97 -> 49 -> 25 -> 13 -> 7 -> 4: every fusion resizes by a non-2 factor
CITYSCAPES_WEIGHTS = [0.8373, 0.918, 0.866, 1.0345, 1.0166, 0.9969, 0.9754, 1.0489, 0.8786,
                      1.0023, 0.9539, 0.9843, 1.1116, 0.9037, 1.0865, 1.0955, 1.0865,
                      1.1529, 1.0507]


@pytest.fixture(autouse=True, scope='module')
def _one_torch_thread():
  with lib.torch_threads(1):
    yield


def _image(shape, seed):
  return np.random.default_rng(seed).standard_normal((1, *shape, 3)).astype(np.float32)


def _close(ours, ref, what):
  ours, ref = np.asarray(ours), np.asarray(ref)
  assert ours.shape == ref.shape, f'{what}: {ours.shape} vs {ref.shape}'
  err = np.abs(ours - ref).max()
  assert err < TOL, f'{what}: max abs error {err:.2e} (reference scale {np.abs(ref).max():.1f})'


def _calib(seed):
  return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


@functools.lru_cache(maxsize=None)
def _jit_apply(model):
  return jax.jit(model.apply)


# ----------------------------------------------------------------------------
# Segmentation, pytorch-v1.1: bilinear fusion, align_corners False, BN momentum 0.01.
# ----------------------------------------------------------------------------
@pytest.fixture(scope='module')
def seg_v11(tmp_path_factory):
  torch.manual_seed(0)
  net = lib.backbone(VARIANT, upsample='bilinear', align_corners=False, bn_momentum=0.01)
  lib.add_seg_head(net, 19, momentum=0.01)
  forward = functools.partial(lib.seg_forward, net, align_corners=False)
  lib.randomize(net, forward, _calib(1), seed=1)
  full = lib.FullModel(net, CITYSCAPES_WEIGHTS)
  path = tmp_path_factory.mktemp('seg') / 'checkpoint.pth.tar'
  torch.save({'epoch': 100, 'best_mIoU': 0.7, 'state_dict': full.state_dict(),
              'optimizer': {'state': {}, 'param_groups': [{'lr': 0.01, 'params': [0]}]}}, path)
  return net, forward, convert.convert(str(path))


def test_seg_v11_detection_and_ignored_tensors(seg_v11):
  net, _, result = seg_v11
  meta = result.metadata
  assert (meta['model'], meta['head'], meta['num_classes']) == (VARIANT, 'seg', 19)
  assert (meta['family'], meta['torch_layout']) == ('seg-v1.1', 'model-prefix')
  o = meta['options']
  assert (o['upsample'], o['align_corners'], o['bn_momentum']) == ('bilinear', False, 0.01)
  assert result.dropped == ['epoch', 'best_mIoU', 'optimizer']
  assert result.ignored[core.IGNORE_LOSS] == ['loss.criterion.weight']
  counters = [k for k in net.state_dict() if k.endswith('num_batches_tracked')]
  assert result.ignored[core.IGNORE_BN_COUNTER] == [f'model.{k}' for k in counters]
  assert result.num_tensors == len(net.state_dict()) - len(counters)


@pytest.mark.parametrize('size', [(64, 64), ODD])
def test_seg_v11_logits_equal_reference(seg_v11, size):
  net, forward, result = seg_v11
  x = _image(size, seed=sum(size))
  with torch.no_grad():
    ref = lib.nhwc(forward(lib.nchw(x)))
  ours = _jit_apply(result.model)(result.variables, x)
  assert ours.shape[1:3] == (-(-size[0] // 4), -(-size[1] // 4))
  _close(ours, ref, f'seg logits at {size}')


def test_seg_train_mode_moves_batch_stats_like_torch_momentum_0_01(seg_v11):
  net, forward, result = seg_v11
  x = np.concatenate([_image((64, 64), 11), _image((64, 64), 12)])
  reference = {k: v.clone() for k, v in net.state_dict().items()}
  net.train()
  try:
    with torch.no_grad():
      ref_logits = lib.nhwc(forward(lib.nchw(x)))
    after = {k: v.clone() for k, v in net.state_dict().items()}
  finally:
    net.load_state_dict(reference)
    net.eval()
  step = jax.jit(lambda v, x: result.model.apply(v, x, train=True, mutable=['batch_stats']))
  logits, new = step(result.variables, x)
  _close(logits, ref_logits, 'train-mode seg logits')
  ours = convert.torch_state_dict({**result.variables, **new}, result.metadata)
  stats = [k for k in after if k.endswith(('running_mean', 'running_var'))]
  for key in stats:
    err = np.abs(ours[f'model.{key}'] - after[key].numpy()).max()
    assert err < 1e-5, f'{key}: {err:.2e}'
  # Momentum 0.01 moves the statistics by a hundredth: make sure they did move.
  assert max((after[k] - reference[k]).abs().max().item() for k in stats) > 1e-4


def test_torch04_legacy_file_without_counters_gives_the_same_variables(seg_v11, tmp_path):
  net, _, result = seg_v11
  state = {f'model.{k}': v for k, v in net.state_dict().items()
           if not k.endswith('num_batches_tracked')}   # BN had no counter in PyTorch 0.4
  path = tmp_path / 'hrnet_lip_5583_torch04.pth'
  torch.save(state, path, _use_new_zipfile_serialization=False)
  legacy = convert.convert(str(path))
  assert legacy.metadata['family'] == 'seg-v1.1' and legacy.ignored == {}
  chex.assert_trees_all_equal(legacy.variables, result.variables)


def test_seg_file_of_the_ocr_branch_gets_its_conventions(seg_v11, tmp_path):
  net, _, _ = seg_v11
  path = tmp_path / 'hrnet_cs_8090_torch11.pth'
  torch.save({f'model.{k}': v for k, v in net.state_dict().items()}, path)
  result = convert.convert(str(path))
  o = result.metadata['options']
  assert result.metadata['family'] == 'seg-ocr-branch'
  assert (o['upsample'], o['align_corners'], o['bn_momentum']) == ('bilinear', True, 0.1)
  again = convert.convert(str(path), family='seg-v1.1')
  assert again.metadata['options']['align_corners'] is False


# ----------------------------------------------------------------------------
# OCR (HRNet-OCR branch): bilinear with align_corners True everywhere, BN 0.1.
# ----------------------------------------------------------------------------
@pytest.fixture(scope='module')
def ocr(tmp_path_factory):
  torch.manual_seed(1)
  net = lib.backbone(VARIANT, upsample='bilinear', align_corners=True, bn_momentum=0.1)
  lib.add_ocr_head(net, 19)
  with torch.no_grad():   # logits O(1), not O(30): float32 rounding stays far below TOL
    net.cls_head.weight.mul_(0.1)
    net.aux_head[3].weight.mul_(0.1)
  forward = functools.partial(lib.ocr_forward, net)
  lib.randomize(net, forward, _calib(2), seed=2)
  path = tmp_path_factory.mktemp('ocr') / 'hrnet_ocr_cs_8162_torch11.pth'
  torch.save({f'model.{k}': v for k, v in net.state_dict().items()}, path)
  return net, forward, convert.convert(str(path))


@pytest.mark.parametrize('size', [(64, 64), ODD])
def test_ocr_logits_equal_reference(ocr, size):
  _, forward, result = ocr
  meta = result.metadata
  assert (meta['head'], meta['family'], meta['num_classes']) == ('ocr', 'ocr', 19)
  assert meta['options']['align_corners'] is True
  assert (meta['options']['mid_channels'], meta['options']['key_channels']) == (512, 256)
  x = _image(size, seed=3 + sum(size))
  with torch.no_grad():
    ref_logits, ref_aux = forward(lib.nchw(x))
  out = _jit_apply(result.model)(result.variables, x)
  _close(out['aux_logits'], lib.nhwc(ref_aux), f'OCR aux logits at {size}')
  _close(out['logits'], lib.nhwc(ref_logits), f'OCR logits at {size}')


# ----------------------------------------------------------------------------
# Pose (deep-high-resolution-net.pytorch): nearest, BN 0.1, one output branch.
# ----------------------------------------------------------------------------
def test_pose_heatmaps_equal_reference_from_a_dataparallel_file(tmp_path):
  torch.manual_seed(2)
  net = lib.backbone(VARIANT, single_output=True)
  lib.add_pose_head(net, 17)
  forward = functools.partial(lib.pose_forward, net)
  lib.randomize(net, forward, _calib(3), seed=3)
  path = tmp_path / 'pose_hrnet_256x192.pth'
  torch.save({f'module.{k}': v for k, v in net.state_dict().items()}, path)
  result = convert.convert(str(path))
  meta = result.metadata
  assert (meta['head'], meta['family'], meta['num_classes']) == ('pose', 'pose', 17)
  assert meta['options']['upsample'] == 'nearest'
  x = _image((64, 64), seed=4)
  with torch.no_grad():
    ref = lib.nhwc(forward(lib.nchw(x)))
  _close(jax.jit(result.model.apply)(result.variables, x), ref, 'pose heatmaps')


# ----------------------------------------------------------------------------
# HRNetV2p (mmdetection HRFPN): nearest fusion, pyramid of 5 levels.
# ----------------------------------------------------------------------------
def test_pyramid_levels_equal_reference_from_an_mmdet_file(tmp_path):
  torch.manual_seed(3)
  detector = lib.Detector(lib.backbone(VARIANT))
  lib.randomize(detector, detector, _calib(4), seed=4)
  state = detector.state_dict()
  path = tmp_path / 'faster_rcnn_hrnetv2p_w18.pth'
  torch.save({'meta': {'epoch': 12, 'mmdet_version': '2.25.0'}, 'state_dict': state}, path)
  result = convert.convert(str(path))
  meta = result.metadata
  assert (meta['head'], meta['family'], meta['torch_layout']) == ('pyramid', 'det', 'mmdet')
  assert (meta['options']['channels'], meta['options']['num_levels']) == (256, 5)
  assert result.ignored[core.IGNORE_DETECTOR] == ['rpn_head.rpn_conv.weight',
                                                  'rpn_head.rpn_conv.bias']
  x = _image((64, 64), seed=5)
  with torch.no_grad():
    ref = detector(lib.nchw(x))
  ours = jax.jit(result.model.apply)(result.variables, x)
  assert len(ours) == 5
  for k, (a, b) in enumerate(zip(ours, ref)):
    _close(a, lib.nhwc(b), f'pyramid level {k}')

  # The same weights in HRNet-Object-Detection's own naming convert identically.
  renamed = {}
  for key, value in state.items():
    key = key.replace('neck.reduction_conv.conv.', 'neck.reduction_conv.0.')
    for k in range(5):
      key = key.replace(f'neck.fpn_convs.{k}.conv.', f'neck.fpn_conv.{k}.')
    renamed[key] = value
  official = convert.convert(renamed)
  assert official.metadata['torch_layout'] == 'hrnet-det'
  chex.assert_trees_all_equal(official.variables, result.variables)


def test_mmsegmentation_file_converts_its_backbone_with_bilinear_fusion(seg_v11):
  net, _, result = seg_v11
  state = {f'backbone.{k}': v for k, v in net.state_dict().items()
           if not k.startswith('last_layer.')}
  heads = {'decode_head.convs.0.conv.weight': torch.zeros(240, 240, 1, 1),
           'decode_head.conv_seg.weight': torch.zeros(19, 240, 1, 1),
           'auxiliary_head.conv_seg.bias': torch.zeros(19)}
  mmseg = convert.convert({**state, **heads})
  meta = mmseg.metadata
  assert (meta['head'], meta['family'], meta['torch_layout']) == ('features', 'mmseg', 'mmseg')
  o = meta['options']
  assert (o['upsample'], o['align_corners'], o['bn_momentum']) == ('bilinear', False, 0.1)
  assert mmseg.ignored[core.IGNORE_MMSEG] == list(heads)
  chex.assert_trees_all_equal(mmseg.variables['params']['backbone'],
               result.variables['params']['backbone'])

"""The facial-landmark head (HRNetV2 concat head of HRNet-Facial-Landmark-Detection):
create_model(head='landmark') and the conversion of an official-layout checkpoint, against
a PyTorch model written after lib/models/hrnet.py (timm backbone with the face code's
bilinear fusion, `head` = Sequential(conv1x1, BN, ReLU, conv1x1))."""
import jax
import numpy as np
import pytest
import torch
from torch import nn

import hrnet_jax
from hrnet_jax import convert

import convert_testlib as lib

VARIANT = 'hrnet_w18_small_v1'


class FaceNet(nn.Module):
  """Holds the backbone and the head so that `randomize` reaches both."""

  def __init__(self, num_landmarks):
    super().__init__()
    self.net = lib.backbone(VARIANT, upsample='bilinear', align_corners=False,
                            bn_momentum=0.01)
    c = sum(self.net.feature_info[i]['num_chs'] for i in range(1, 5))
    self.head = nn.Sequential(nn.Conv2d(c, c, 1), nn.BatchNorm2d(c, momentum=0.01), nn.ReLU(),
                              nn.Conv2d(c, num_landmarks, 1))

  def forward(self, x):
    return self.head(lib.concat(lib.branches(self.net, x), align_corners=False))

  def official_state_dict(self):
    """The face repository's keys: backbone at the top level, then head.*."""
    state = dict(self.net.state_dict())
    state.update({f'head.{k}': v for k, v in self.head.state_dict().items()})
    return state


@pytest.mark.slow
def test_landmark_head_shapes_and_defaults():
  model = hrnet_jax.create_model(VARIANT, head='landmark', num_classes=29)
  variables = model.init(jax.random.key(0), np.zeros((1, 64, 64, 3), np.float32))
  out = model.apply(variables, np.zeros((2, 64, 64, 3), np.float32))
  assert out.shape == (2, 16, 16, 29)
  o = model.opts
  assert (o.upsample, o.align_corners, o.bn_momentum, o.conv_init) == (
      'bilinear', False, 0.01, 'normal')
  assert hrnet_jax.create_model(VARIANT, head='landmark').num_classes == 98


@pytest.mark.slow
@pytest.mark.parametrize('prefix', ['', 'module.'])
def test_official_landmark_checkpoint_converts_with_parity(tmp_path, prefix):
  with lib.torch_threads(1):
    torch.manual_seed(5)
    face = FaceNet(29)
    calib = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    lib.randomize(face, face.forward, calib, seed=6)
    path = tmp_path / 'HR18-COFW.pth'
    torch.save({'state_dict': {prefix + k: v for k, v in face.official_state_dict().items()}},
               path)
    result = convert.convert(str(path))
    meta = result.metadata
    assert (meta['model'], meta['head'], meta['family'], meta['num_classes']) == (
        VARIANT, 'landmark', 'face', 29)
    o = meta['options']
    assert (o['upsample'], o['align_corners'], o['bn_momentum']) == ('bilinear', False, 0.01)
    x = np.random.default_rng(7).standard_normal((1, 96, 96, 3)).astype(np.float32)
    with torch.no_grad():
      ref = lib.nhwc(face(lib.nchw(x)))
  ours = np.asarray(jax.jit(result.model.apply)(result.variables, x))
  assert ours.shape == ref.shape == (1, 24, 24, 29)
  assert np.abs(ours - ref).max() < 1e-4, np.abs(ours - ref).max()
  # And back: the Flax variables written with the official keys and values.
  back = convert.torch_state_dict(result.variables, meta)
  official = face.official_state_dict()
  assert set(back) <= set(official)
  assert {k for k in official if not k.endswith('num_batches_tracked')} <= set(back)
  for key in ('head.0.weight', 'head.1.running_var', 'head.3.bias'):
    np.testing.assert_allclose(np.asarray(back[key]), official[key].numpy(), rtol=1e-6)

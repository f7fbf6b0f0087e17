"""PyTorch references of the official HRNet models, for the conversion tests.

The backbone is timm's HRNet (written from the official classification code, not by
us). The segmentation families need bilinear fusion to the exact branch size, so their
modules get the official segmentation forward; the heads (V2 seg, OCR, pose V1, HRFPN)
are written here after the official definitions, with the official module names, so
that their state_dicts have the official keys.
"""
import contextlib
import types

import numpy as np
import timm
import torch
import torch.nn.functional as F
from torch import nn

TIMM_NAMES = {'hrnet_w18_small_v1': 'hrnet_w18_small'}   # everything else: same name


def timm_name(variant: str) -> str:
  return TIMM_NAMES.get(variant, variant)


def _ends_residual_branch(name: str) -> bool:
  """BNs whose output is added to a stream: last BN of a block, fusion BNs."""
  return ('fuse_layers' in name or name.endswith('.bn3')
          or ('branches' in name and name.endswith('.bn2')))


def randomize(module: nn.Module, forward, calib: torch.Tensor, seed: int = 0) -> None:
  """Random biases, BN affine and BN running statistics, activations kept O(1).

  Every bias ~ N(0, 0.1); running statistics are measured on `calib` (a train-mode
  pass with momentum 1), then perturbed (var x U(0.8, 1.25), mean + N(0, 0.1) std).
  Gamma ~ U(0.5, 1.5), except U(0.1, 0.3) on the BNs that end a residual or fusion
  branch: with gamma ~ 1 everywhere a deep random HRNet is chaotic enough that float32
  rounding alone (which differs between XLA and oneDNN) grows past 1e-4 in W30+;
  this way every weight still moves the outputs by orders more than the tolerance.
  """
  g = torch.Generator().manual_seed(seed)
  bns = [(n, m) for n, m in module.named_modules() if isinstance(m, nn.BatchNorm2d)]
  momenta = [bn.momentum for _, bn in bns]
  with torch.no_grad():
    for p in module.parameters():   # timm's init leaves biases at 0: make them count
      if p.ndim == 1:
        p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    for name, bn in bns:
      low, high = (0.1, 0.3) if _ends_residual_branch(name) else (0.5, 1.5)
      bn.weight.uniform_(low, high, generator=g)
      bn.momentum = 1.0
    module.train()
    forward(calib)
    module.eval()
    for (_, bn), momentum in zip(bns, momenta):
      bn.momentum = momentum
      bn.running_var.mul_(torch.empty(bn.running_var.shape).uniform_(0.8, 1.25, generator=g))
      bn.running_mean.add_(torch.randn(bn.running_mean.shape, generator=g) * 0.1
                           * bn.running_var.sqrt())


@contextlib.contextmanager
def torch_threads(n: int):
  """Fewer torch threads: on a loaded 2-core machine its thread pool fights XLA's."""
  before = torch.get_num_threads()
  torch.set_num_threads(n)
  try:
    yield
  finally:
    torch.set_num_threads(before)


def set_bn_momentum(module: nn.Module, momentum: float) -> None:
  for m in module.modules():
    if isinstance(m, nn.BatchNorm2d):
      m.momentum = momentum


def nchw(x: np.ndarray) -> torch.Tensor:
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def nhwc(t: torch.Tensor) -> np.ndarray:
  return t.detach().numpy().transpose(0, 2, 3, 1)


# ----------------------------------------------------------------------------
# Backbone.
# ----------------------------------------------------------------------------
def _bilinear_fuse_forward(self, x, align_corners):
  """The segmentation repository's HighResolutionModule.forward: lower branches are
  upsampled bilinearly to the exact size of the target branch (odd sizes work)."""
  if self.num_branches == 1:
    return [self.branches[0](x[0])]
  for i in range(self.num_branches):
    x[i] = self.branches[i](x[i])
  out = []
  for i, fuse in enumerate(self.fuse_layers):
    y = x[0] if i == 0 else fuse[0](x[0])
    for j in range(1, self.num_branches):
      if i == j:
        y = y + x[j]
      elif j > i:
        low = fuse[j][1](fuse[j][0](x[j]))   # conv1x1 + BN; timm's [2] is nearest Upsample
        y = y + F.interpolate(low, size=x[i].shape[-2:], mode='bilinear',
                              align_corners=align_corners)
      else:
        y = y + fuse[j](x[j])
    out.append(F.relu(y))
  return out


def backbone(variant: str, *, upsample: str = 'nearest', align_corners: bool = False,
             bn_momentum: float = 0.1, single_output: bool = False) -> nn.Module:
  """timm's HRNet without a head (official key names), with the family's fusion.

  `single_output`: the pose network's last module fuses into branch 0 only.
  """
  net = timm.create_model(timm_name(variant), head='')
  set_bn_momentum(net, bn_momentum)
  modules = [m for m in net.modules() if type(m).__name__ == 'HighResolutionModule']
  if upsample == 'bilinear':
    for m in modules:
      m.forward = types.MethodType(
          lambda self, x, ac=align_corners: _bilinear_fuse_forward(self, x, ac), m)
  if single_output:
    last = modules[-1]
    last.fuse_layers = nn.ModuleList([last.fuse_layers[0]])
  return net


def branches(net: nn.Module, x: torch.Tensor):
  return net.forward_features(x)


def concat(xs, align_corners: bool) -> torch.Tensor:
  size = xs[0].shape[-2:]
  ups = [F.interpolate(x, size=size, mode='bilinear', align_corners=align_corners)
         for x in xs[1:]]
  return torch.cat([xs[0]] + ups, 1)


# ----------------------------------------------------------------------------
# Heads, as the official code defines them (module names give the official keys).
# ----------------------------------------------------------------------------
def add_seg_head(net: nn.Module, num_classes: int, momentum: float) -> None:
  c = sum(net.feature_info[i]['num_chs'] for i in range(1, 5))
  net.last_layer = nn.Sequential(
      nn.Conv2d(c, c, 1), nn.BatchNorm2d(c, momentum=momentum), nn.ReLU(),
      nn.Conv2d(c, num_classes, 1))


def seg_forward(net, x, align_corners=False):
  return net.last_layer(concat(branches(net, x), align_corners))


class BNReLU(nn.Sequential):
  def __init__(self, channels):
    super().__init__(nn.BatchNorm2d(channels), nn.ReLU())


class ObjectAttentionBlock(nn.Module):
  """`_ObjectAttentionBlock` of the HRNet-OCR branch (scale 1)."""

  def __init__(self, in_channels, key_channels):
    super().__init__()
    self.key_channels = key_channels
    self.f_pixel = nn.Sequential(
        nn.Conv2d(in_channels, key_channels, 1, bias=False), BNReLU(key_channels),
        nn.Conv2d(key_channels, key_channels, 1, bias=False), BNReLU(key_channels))
    self.f_object = nn.Sequential(
        nn.Conv2d(in_channels, key_channels, 1, bias=False), BNReLU(key_channels),
        nn.Conv2d(key_channels, key_channels, 1, bias=False), BNReLU(key_channels))
    self.f_down = nn.Sequential(nn.Conv2d(in_channels, key_channels, 1, bias=False),
                                BNReLU(key_channels))
    self.f_up = nn.Sequential(nn.Conv2d(key_channels, in_channels, 1, bias=False),
                              BNReLU(in_channels))

  def forward(self, x, proxy):
    n, h, w = x.size(0), x.size(2), x.size(3)
    query = self.f_pixel(x).view(n, self.key_channels, -1).permute(0, 2, 1)
    key = self.f_object(proxy).view(n, self.key_channels, -1)
    value = self.f_down(proxy).view(n, self.key_channels, -1).permute(0, 2, 1)
    sim = F.softmax((self.key_channels ** -.5) * torch.matmul(query, key), dim=-1)
    context = torch.matmul(sim, value).permute(0, 2, 1).contiguous()
    return self.f_up(context.view(n, self.key_channels, h, w))


class SpatialOCR(nn.Module):
  def __init__(self, in_channels, key_channels, out_channels, dropout=0.05):
    super().__init__()
    self.object_context_block = ObjectAttentionBlock(in_channels, key_channels)
    self.conv_bn_dropout = nn.Sequential(
        nn.Conv2d(2 * in_channels, out_channels, 1, bias=False), BNReLU(out_channels),
        nn.Dropout2d(dropout))

  def forward(self, feats, proxy):
    context = self.object_context_block(feats, proxy)
    return self.conv_bn_dropout(torch.cat([context, feats], 1))


def spatial_gather(feats, probs):
  n, k = probs.size(0), probs.size(1)
  probs = F.softmax(probs.view(n, k, -1), dim=2)
  feats = feats.view(n, feats.size(1), -1).permute(0, 2, 1)
  return torch.matmul(probs, feats).permute(0, 2, 1).unsqueeze(3)


def add_ocr_head(net, num_classes, mid=512, key=256):
  c = sum(net.feature_info[i]['num_chs'] for i in range(1, 5))
  net.conv3x3_ocr = nn.Sequential(nn.Conv2d(c, mid, 3, padding=1), nn.BatchNorm2d(mid),
                                  nn.ReLU())
  net.ocr_distri_head = SpatialOCR(mid, key, mid)
  net.cls_head = nn.Conv2d(mid, num_classes, 1)
  net.aux_head = nn.Sequential(nn.Conv2d(c, c, 1), nn.BatchNorm2d(c), nn.ReLU(),
                               nn.Conv2d(c, num_classes, 1))


def ocr_forward(net, x):
  feats = concat(branches(net, x), align_corners=True)
  aux = net.aux_head(feats)
  feats = net.conv3x3_ocr(feats)
  feats = net.ocr_distri_head(feats, spatial_gather(feats, aux))
  return net.cls_head(feats), aux


def add_pose_head(net, num_joints):
  net.final_layer = nn.Conv2d(net.feature_info[1]['num_chs'], num_joints, 1)


def pose_forward(net, x):
  return net.final_layer(branches(net, x)[0])


class ConvModule(nn.Module):
  """mmcv's ConvModule without norm/activation: the conv lives at `.conv`."""

  def __init__(self, cin, cout, kernel_size, padding=0):
    super().__init__()
    self.conv = nn.Conv2d(cin, cout, kernel_size, padding=padding)

  def forward(self, x):
    return self.conv(x)


class HRFPN(nn.Module):
  """mmdetection's HRFPN neck (HRNetV2p), 5 levels of `out_channels`."""

  def __init__(self, in_channels, out_channels=256, num_outs=5):
    super().__init__()
    self.reduction_conv = ConvModule(sum(in_channels), out_channels, 1)
    self.fpn_convs = nn.ModuleList(
        [ConvModule(out_channels, out_channels, 3, padding=1) for _ in range(num_outs)])

  def forward(self, xs):
    outs = [xs[0]] + [F.interpolate(x, scale_factor=2 ** i, mode='bilinear')
                      for i, x in enumerate(xs) if i > 0]
    out = self.reduction_conv(torch.cat(outs, 1))
    levels = [out] + [F.avg_pool2d(out, kernel_size=2 ** i, stride=2 ** i)
                      for i in range(1, len(self.fpn_convs))]
    return tuple(conv(level) for conv, level in zip(self.fpn_convs, levels))


class Detector(nn.Module):
  """An mmdetection two-stage detector's top-level names (backbone, neck, rpn_head)."""

  def __init__(self, net):
    super().__init__()
    self.backbone = net
    self.neck = HRFPN([net.feature_info[i]['num_chs'] for i in range(1, 5)])
    self.rpn_head = nn.Module()
    self.rpn_head.rpn_conv = nn.Conv2d(256, 256, 3, padding=1)

  def forward(self, x):
    return self.neck(branches(self.backbone, x))


class FullModel(nn.Module):
  """The segmentation trainer's wrapper: keys `model.*` and `loss.criterion.weight`."""

  def __init__(self, net, class_weights):
    super().__init__()
    self.model = net
    self.loss = nn.Module()
    self.loss.criterion = nn.CrossEntropyLoss(weight=torch.tensor(class_weights))

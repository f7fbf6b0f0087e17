"""What the benchmarks share: a median timer and the PyTorch reference segmentation net.

The reference is timm's HRNet backbone (an implementation nobody here wrote) with its
fusion upsampling switched to bilinear, as in the official segmentation code, plus the
`pytorch-v1.1` `last_layer` head written here.
"""
import statistics
import time

# timm's name for the official hrnet_w18_small_v1.
TIMM_NAMES = {'hrnet_w18_small_v1': 'hrnet_w18_small'}


def median_seconds(fn, repeats):
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def timm_name(model_name):
  return TIMM_NAMES.get(model_name, model_name)


def build_torch_seg(model_name, num_classes):
  """timm HRNet backbone + the pytorch-v1.1 seg head, logits at 1/4 (NCHW)."""
  import timm
  import torch
  import torch.nn.functional as F

  backbone = timm.create_model(timm_name(model_name), features_only=True,
                               feature_location='', out_indices=(1, 2, 3, 4))
  for m in backbone.modules():
    if isinstance(m, torch.nn.Upsample):
      m.mode = 'bilinear'   # pytorch-v1.1 fuses with bilinear, align_corners=False
  width = sum(backbone.feature_info.channels())

  class SegNet(torch.nn.Module):

    def __init__(self):
      super().__init__()
      self.backbone = backbone
      # pytorch-v1.1 `last_layer`: conv1x1 + BN + ReLU, conv1x1 to the classes.
      self.last_layer = torch.nn.Sequential(
          torch.nn.Conv2d(width, width, 1), torch.nn.BatchNorm2d(width, momentum=0.01),
          torch.nn.ReLU(inplace=True), torch.nn.Conv2d(width, num_classes, 1))

    def forward(self, x):
      feats = self.backbone(x)
      h, w = feats[0].shape[2:]
      feats = [feats[0]] + [F.interpolate(f, size=(h, w), mode='bilinear',
                                          align_corners=False) for f in feats[1:]]
      return self.last_layer(torch.cat(feats, 1))

  return SegNet()

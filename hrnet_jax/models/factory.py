"""`create_model`: an HRNet variant with one representation head, as a Flax module."""
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from hrnet_jax.models.backbone import HRNetBackbone
from hrnet_jax.models.heads import ClsHead, LandmarkHead, PoseHead, PyramidHead, SegHead
from hrnet_jax.models.layers import ModelOptions
from hrnet_jax.models.ocr import OCRHead
from hrnet_jax.models.specs import VARIANTS, VariantSpec, get_spec

# Per head, the conventions of the official code it comes from:
#   cls / features: HRNet-Image-Classification and timm (nearest, BN 0.1, kaiming init);
#   seg: HRNet-Semantic-Segmentation `pytorch-v1.1` (bilinear, align_corners False,
#     BN 0.01, normal(0.001) init);
#   pyramid: HRNet-Object-Detection / mmdetection (nearest fusion, BN 0.1, kaiming init;
#     the HRFPN neck itself concatenates with bilinear);
#   ocr: the `HRNet-OCR` branch (bilinear, align_corners True, BN 0.1);
#   pose: deep-high-resolution-net.pytorch (nearest, BN 0.1, normal(0.001) init);
#   landmark: HRNet-Facial-Landmark-Detection (F.interpolate bilinear with the default
#     align_corners False, BN 0.01, normal(0.001) init).
FAMILY_DEFAULTS = {
    'cls': dict(upsample='nearest', align_corners=False, bn_momentum=0.1, conv_init='kaiming'),
    'features': dict(upsample='nearest', align_corners=False, bn_momentum=0.1,
                     conv_init='kaiming'),
    'seg': dict(upsample='bilinear', align_corners=False, bn_momentum=0.01,
                conv_init='normal'),
    'pyramid': dict(upsample='nearest', align_corners=False, bn_momentum=0.1,
                    conv_init='kaiming'),
    'ocr': dict(upsample='bilinear', align_corners=True, bn_momentum=0.1, conv_init='normal'),
    'pose': dict(upsample='nearest', align_corners=False, bn_momentum=0.1, conv_init='normal'),
    'landmark': dict(upsample='bilinear', align_corners=False, bn_momentum=0.01,
                     conv_init='normal'),
}
HEADS = tuple(FAMILY_DEFAULTS)
DEFAULT_NUM_CLASSES = {'cls': 1000, 'seg': 19, 'ocr': 19, 'pose': 17, 'landmark': 98}
# Keyword options each head takes besides num_classes.
HEAD_OPTIONS = {'cls': ('head_conv_bias',), 'pyramid': ('channels', 'num_levels'),
                'ocr': ('mid_channels', 'key_channels', 'dropout'), 'seg': (), 'pose': (),
                'landmark': (), 'features': ()}


class HRNet(nn.Module):
  """Backbone + head. Call as `model.apply(variables, images, train=False)`.

  `images` is a float NHWC batch, normalised with the ImageNet mean and std. Variables
  are `{'params', 'batch_stats'}`, each split into `backbone` and `head`.
  """
  spec: VariantSpec
  head: str
  num_classes: Optional[int]
  opts: ModelOptions
  head_options: Any = ()   # tuple of (name, value) pairs, hashable for Flax
  remat: bool = False

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False):
    if images.ndim != 4:
      raise ValueError(f'HRNet expects NHWC images (batch, height, width, channels), got '
                       f'shape {tuple(images.shape)}')
    if min(images.shape[1:3]) < 32:
      raise ValueError(f'HRNet needs inputs of at least 32x32 pixels (four stride-2 '
                       f'stages), got {images.shape[1]}x{images.shape[2]}')
    xs = HRNetBackbone(self.spec, multi_scale_output=self.head != 'pose', remat=self.remat,
                       opts=self.opts, name='backbone')(images, train)
    o, extra = self.opts, dict(self.head_options)
    if self.head == 'features':
      return tuple(xs)
    if self.head == 'seg':
      return SegHead(self.num_classes, opts=o, name='head')(xs, train)
    if self.head == 'ocr':
      return OCRHead(self.num_classes, opts=o, name='head', **extra)(xs, train)
    if self.head == 'cls':
      return ClsHead(self.num_classes, opts=o, name='head', **extra)(xs, train)
    if self.head == 'pose':
      return PoseHead(self.num_classes, opts=o, name='head')(xs, train)
    if self.head == 'landmark':
      return LandmarkHead(self.num_classes, opts=o, name='head')(xs, train)
    return PyramidHead(opts=o, name='head', **extra)(xs, train)


def _as_dtype(value, what):
  try:
    return jnp.dtype(value)
  except TypeError:
    raise ValueError(f'{what} must be a dtype such as float32 or bfloat16, got {value!r}') \
        from None


def create_model(name: str, *, head: str = 'seg', num_classes: Optional[int] = None,
                 dtype: Any = jnp.float32, param_dtype: Any = jnp.float32,
                 upsample: Optional[str] = None, align_corners: Optional[bool] = None,
                 bn_momentum: Optional[float] = None, bn_eps: float = 1e-5,
                 conv_init: Optional[str] = None, remat: bool = False,
                 **head_options) -> HRNet:
  """Builds an HRNet variant with a representation head.

  Args:
    name: one of `hrnet_jax.VARIANTS` ('hrnet_w18_small_v1' ... 'hrnet_w64').
    head: 'seg' (HRNetV2), 'ocr', 'cls' (HRNet-C), 'pose' (HRNetV1 heatmaps),
      'landmark' (HRNetV2 facial-landmark heatmaps), 'pyramid' (HRNetV2p) or
      'features' (the four branch maps; V1 is the first).
    num_classes: classes (joints for 'pose', landmarks for 'landmark'); default 19 for
      seg/ocr, 1000 for cls, 17 for pose, 98 (WFLW) for landmark; not used by 'pyramid'
      and 'features'.
    dtype, param_dtype: computation and parameter dtypes.
    upsample, align_corners, bn_momentum, conv_init: faithfulness switches; None takes
      the default of the head's official code base (`FAMILY_DEFAULTS`). bn_momentum is in
      PyTorch's convention.
    remat: rematerialise each multi-resolution module in the backward pass.
    **head_options: 'cls': head_conv_bias (False for "ssld" checkpoints); 'pyramid':
      channels, num_levels; 'ocr': mid_channels, key_channels, dropout.
  """
  spec = get_spec(name)
  if head not in FAMILY_DEFAULTS:
    raise ValueError(f'unknown head {head!r}; valid: {", ".join(HEADS)}')
  unknown = sorted(set(head_options) - set(HEAD_OPTIONS[head]))
  if unknown:
    valid = ', '.join(HEAD_OPTIONS[head]) or 'none'
    raise ValueError(f'unknown option(s) {unknown} for head {head!r}; valid: {valid}')
  if num_classes is None:
    num_classes = DEFAULT_NUM_CLASSES.get(head)
  elif head in ('pyramid', 'features'):
    raise ValueError(f'head {head!r} has no classes; leave num_classes unset')
  elif int(num_classes) < 1:
    raise ValueError(f'num_classes must be >= 1, got {num_classes}')
  family = FAMILY_DEFAULTS[head]
  opts = ModelOptions(
      dtype=_as_dtype(dtype, 'dtype'), param_dtype=_as_dtype(param_dtype, 'param_dtype'),
      bn_momentum=family['bn_momentum'] if bn_momentum is None else float(bn_momentum),
      bn_eps=bn_eps,
      upsample=family['upsample'] if upsample is None else upsample,
      align_corners=family['align_corners'] if align_corners is None else bool(align_corners),
      conv_init=family['conv_init'] if conv_init is None else conv_init)
  return HRNet(spec=spec, head=head, num_classes=num_classes, opts=opts,
               head_options=tuple(sorted(head_options.items())), remat=remat)


def model_options_dict(model: HRNet) -> dict:
  """The create_model keyword options that rebuild `model` (for checkpoint metadata)."""
  o = model.opts
  return dict(upsample=o.upsample, align_corners=o.align_corners, bn_momentum=o.bn_momentum,
              bn_eps=o.bn_eps, conv_init=o.conv_init, **dict(model.head_options))


__all__ = ['create_model', 'HRNet', 'FAMILY_DEFAULTS', 'HEADS', 'VARIANTS',
           'model_options_dict']

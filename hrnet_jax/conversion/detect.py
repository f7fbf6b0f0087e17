"""What a source state_dict is: its container, key layout, variant, head and family.

Everything is read from key names and tensor shapes (no file names needed), except the
segmentation-family choice between the two official branches, whose files share their
keys: the `HRNet-OCR` branch's files carry `torch11` in their names.
"""
import dataclasses
import os
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from hrnet_jax.conversion import keymap
from hrnet_jax.conversion.errors import ConversionError
from hrnet_jax.conversion.torch_io import to_numpy
from hrnet_jax.models import VARIANTS

# Conventions of each official code base; they decide the numerics of the converted model.
FAMILIES = {
    'cls': ('HRNet-Image-Classification / timm',
            dict(upsample='nearest', align_corners=False, bn_momentum=0.1)),
    'seg-v1.1': ('HRNet-Semantic-Segmentation pytorch-v1.1',
                 dict(upsample='bilinear', align_corners=False, bn_momentum=0.01)),
    'seg-ocr-branch': ('HRNet-Semantic-Segmentation HRNet-OCR branch',
                       dict(upsample='bilinear', align_corners=True, bn_momentum=0.1)),
    'ocr': ('HRNet-Semantic-Segmentation HRNet-OCR branch (OCR head)',
            dict(upsample='bilinear', align_corners=True, bn_momentum=0.1)),
    'pose': ('deep-high-resolution-net.pytorch',
             dict(upsample='nearest', align_corners=False, bn_momentum=0.1)),
    # Its fusion calls F.interpolate(mode='bilinear') without align_corners (False).
    'face': ('HRNet-Facial-Landmark-Detection',
             dict(upsample='bilinear', align_corners=False, bn_momentum=0.01)),
    # HRNet-Object-Detection and mmdetection: nearest fusion upsampling, BN momentum 0.1,
    # HRFPN's concat is bilinear with align_corners False.
    'det': ('HRNet-Object-Detection / mmdetection HRFPN',
            dict(upsample='nearest', align_corners=False, bn_momentum=0.1)),
    # mmsegmentation's HRModule resizes to the exact size, bilinear, align_corners False.
    'mmseg': ('mmsegmentation HRNet backbone',
              dict(upsample='bilinear', align_corners=False, bn_momentum=0.1)),
}
_CONTAINER_KEYS = ('state_dict', 'model', 'model_state', 'net')


@dataclasses.dataclass
class Source:
  """A state_dict as numpy arrays, keys without the DataParallel 'module.' prefix."""
  name: str                          # file name, or '<state_dict>'
  tensors: Dict[str, np.ndarray]
  dropped: List[str]                 # container entries that are not the weights


def _is_state_dict(obj: Any) -> bool:
  return (isinstance(obj, Mapping) and len(obj) > 0
          and all(isinstance(k, str) and hasattr(v, 'shape') for k, v in obj.items()))


def make_source(obj: Any, name: str) -> Source:
  """Unwraps `{'state_dict': ...}`-style containers and strips 'module.'."""
  dropped = []
  if not _is_state_dict(obj):
    if not isinstance(obj, Mapping):
      raise ConversionError(f'{name}: holds a {type(obj).__name__}, not a state_dict '
                            '(a mapping of names to tensors)')
    inner = next((k for k in _CONTAINER_KEYS if _is_state_dict(obj.get(k))), None)
    if inner is None:
      raise ConversionError(f'{name}: no state_dict inside; top-level entries: '
                            f'{", ".join(map(str, list(obj)[:8]))}')
    dropped = [str(k) for k in obj if k != inner]
    obj = obj[inner]
  tensors = {}
  for key, value in obj.items():
    clean = key
    while clean.startswith('module.'):   # DataParallel / DistributedDataParallel
      clean = clean[len('module.'):]
    tensors[clean] = to_numpy(value)
  return Source(name, tensors, dropped)


def detect_layout(keys) -> str:
  body = [k for k in keys if not k.startswith('loss.')]
  if body and all(k.startswith('model.') for k in body):
    return 'model-prefix'
  if any(k.startswith('backbone.') for k in keys):
    if any(k.startswith('decode_head.') for k in keys):
      return 'mmseg'
    if 'neck.reduction_conv.0.weight' in keys:
      return 'hrnet-det'
    if any(k.startswith('neck.fpn_conv.') for k in keys):
      return 'mmdet-v1'
    return 'mmdet'
  return 'plain'


def strip_layout(key: str, layout: keymap.Layout) -> Optional[str]:
  """The key without the layout's prefixes; None for keys outside backbone and head."""
  if layout.outer:
    if not key.startswith(layout.outer):
      return None
    key = key[len(layout.outer):]
  if layout.backbone:
    for prefix in (layout.backbone, layout.head):
      if key.startswith(prefix):
        return key[len(prefix):]
    return None
  return key


def _count(keys, pattern: str) -> int:
  regex = re.compile(pattern)
  return len({m.group(1) for m in map(regex.fullmatch, keys) if m})


def detect_variant(shapes: Mapping[str, Tuple[int, ...]], name: str) -> str:
  """The HRNet variant from stem, stage-1 and transition shapes and module counts."""
  needed = ('conv1.weight', 'layer1.0.conv1.weight', 'transition1.0.0.weight')
  missing = [k for k in needed if k not in shapes]
  if missing:
    sample = ', '.join(list(shapes)[:4])
    raise ConversionError(f'{name}: not an HRNet checkpoint (no {", ".join(missing)}; its '
                          f'keys start {sample})')
  keys = list(shapes)
  width = shapes['transition1.0.0.weight'][0]
  found = dict(
      width=width,
      stage1_blocks=_count(keys, r'layer1\.(\d+)\.conv1\.weight'),
      stage1_planes=shapes['layer1.0.conv1.weight'][0],
      modules=tuple(_count(keys, rf'stage{s}\.(\d+)\..*') for s in (2, 3, 4)),
      blocks=_count(keys, r'stage2\.0\.branches\.0\.(\d+)\.conv1\.weight'))
  for spec in VARIANTS.values():
    if dict(width=spec.width, stage1_blocks=spec.stage1_blocks,
            stage1_planes=spec.stage1_planes,
            modules=tuple(s.num_modules for s in spec.stages),
            blocks=spec.stages[0].num_blocks[0]) == found:
      return spec.name
  raise ConversionError(f'{name}: no HRNet variant has width {width}, stage 1 of '
                        f'{found["stage1_blocks"]} x {found["stage1_planes"]}, modules '
                        f'{found["modules"]} and {found["blocks"]} blocks per branch; pass '
                        f'--model (one of {", ".join(VARIANTS)})')


def detect_head(keys) -> str:
  keys = set(keys)
  if any(k.startswith(('ocr_distri_head.', 'conv3x3_ocr.', 'aux_head.', 'cls_head.'))
         for k in keys):
    return 'ocr'
  if 'last_layer.0.weight' in keys:
    return 'seg'
  if 'classifier.weight' in keys or 'incre_modules.0.0.conv1.weight' in keys:
    return 'cls'
  if 'final_layer.weight' in keys:
    return 'pose'
  if 'head.0.weight' in keys and 'head.3.weight' in keys:
    return 'landmark'
  if any(k.startswith('reduction_conv.') for k in keys):
    return 'pyramid'
  return 'features'


def detect_head_config(head: str, shapes: Mapping[str, Tuple[int, ...]], layout: keymap.Layout,
                       name: str) -> Tuple[Optional[int], Dict[str, Any]]:
  """(class count, head options) of the head a file carries."""
  def first_dim(key):
    if key not in shapes:
      raise ConversionError(f'{name}: its {head} head lacks {key} (convert the backbone alone '
                            'with --head features)')
    return int(shapes[key][0])

  if head == 'cls':
    # The "ssld" (PaddleClas-distilled) files have no bias on the head convs.
    return first_dim('classifier.weight'), dict(head_conv_bias='final_layer.0.bias' in shapes)
  if head == 'seg':
    return first_dim('last_layer.3.weight'), {}
  if head == 'ocr':
    return first_dim('cls_head.weight'), dict(
        mid_channels=first_dim('conv3x3_ocr.0.weight'),
        key_channels=first_dim('ocr_distri_head.object_context_block.f_pixel.0.weight'))
  if head == 'pose':
    return first_dim('final_layer.weight'), {}
  if head == 'landmark':
    return first_dim('head.3.weight'), {}
  if head == 'pyramid':
    reduction = ('reduction_conv.0.weight' if layout.pyramid == 'hrnet-det'
                 else 'reduction_conv.conv.weight')
    levels = _count(shapes, r'fpn_convs?\.(\d+)\..*')
    return None, dict(channels=first_dim(reduction), num_levels=levels)
  return None, {}


def detect_family(head: str, layout: str, name: str) -> str:
  """The official code base a file comes from, by its source head and layout."""
  if layout == 'mmseg':
    return 'mmseg'
  if head == 'pyramid' or keymap.LAYOUTS[layout].backbone:
    return 'det'
  if head == 'ocr':
    return 'ocr'
  if head == 'seg':
    # Both segmentation branches save the same keys; the HRNet-OCR branch's released
    # files (hrnet_cs_8090_torch11.pth, ...) are named after PyTorch 1.1.
    return 'seg-ocr-branch' if 'torch11' in os.path.basename(name) else 'seg-v1.1'
  if head == 'pose':
    return 'pose'
  if head == 'landmark':
    return 'face'
  return 'cls'

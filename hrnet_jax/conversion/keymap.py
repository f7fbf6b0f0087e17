"""The fixed renaming between Flax variable paths and the official PyTorch keys.

The Flax modules are named after the official structure (`layer1_0`, `transition1`,
`stage3_2/branch1_3`, `stage4_2/fuse3_0/conv2`), so every Flax variable has exactly one
PyTorch key, written out below rule by rule. Nothing here guesses from shapes: the
shapes are checked by the caller against the file.

A `Layout` says how the repository that wrote a file prefixes its keys: the
segmentation trainer wraps the network (`model.`), detection files split it into
`backbone.` and `neck.`.
"""
import dataclasses
import re
from typing import Any, Callable, Dict, List, Mapping, Tuple

import flax
import numpy as np

from hrnet_jax.conversion.errors import ConversionError


@dataclasses.dataclass(frozen=True)
class Layout:
  name: str
  outer: str = ''          # before every key: 'model.' (FullModel of the segmentation code)
  backbone: str = ''       # before backbone keys: 'backbone.' in detection files
  head: str = ''           # before head keys: 'neck.' in detection files
  pyramid: str = 'mmdet'   # how the HRFPN convs are named: mmdet, mmdet-v1, hrnet-det
  description: str = ''


LAYOUTS = {layout.name: layout for layout in [
    Layout('plain', description='unprefixed keys (classification repo, timm, pose repo)'),
    Layout('model-prefix', outer='model.',
           description="'model.' prefix of the segmentation trainer (both branches)"),
    Layout('mmdet', backbone='backbone.', head='neck.', pyramid='mmdet',
           description='mmdetection 2.x/3.x: neck.reduction_conv.conv, neck.fpn_convs.K.conv'),
    Layout('mmdet-v1', backbone='backbone.', head='neck.', pyramid='mmdet-v1',
           description='mmdetection 1.x: neck.reduction_conv.conv, neck.fpn_conv.K'),
    Layout('hrnet-det', backbone='backbone.', head='neck.', pyramid='hrnet-det',
           description='HRNet-Object-Detection: neck.reduction_conv.0, neck.fpn_conv.K'),
    # mmsegmentation's decode heads have no Flax counterpart: the backbone converts alone.
    Layout('mmseg', backbone='backbone.', head='decode_head.',
           description='mmsegmentation: backbone.*, decode_head.*, auxiliary_head.*'),
]}

# The layout written by --to-torch when the metadata does not record one (models trained
# here from scratch): the one of the official repository of each head.
DEFAULT_LAYOUT = {'cls': 'plain', 'features': 'plain', 'pose': 'plain', 'landmark': 'plain',
                  'seg': 'model-prefix', 'ocr': 'model-prefix', 'pyramid': 'mmdet'}

# Module names that belong to a task head in some official file (used to recognise the
# head a file carries, and to drop it on purpose when only the backbone is wanted).
HEAD_KEY_PREFIXES = ('incre_modules.', 'downsamp_modules.', 'final_layer.', 'classifier.',
                     'last_layer.', 'aux_head.', 'conv3x3_ocr.', 'ocr_distri_head.',
                     'cls_head.', 'reduction_conv.', 'fpn_conv.', 'fpn_convs.', 'head.')


@dataclasses.dataclass(frozen=True)
class Entry:
  """One Flax variable and its PyTorch counterpart."""
  collection: str               # 'params' or 'batch_stats'
  path: Tuple[str, ...]         # inside the collection, e.g. ('backbone', 'conv1', 'kernel')
  key: str                      # full PyTorch key, prefixes included
  kind: str                     # 'conv' (OIHW <-> HWIO), 'linear' ((out,in) <-> (in,out)), 'vector'

  @property
  def module_key(self) -> str:
    return self.key.rsplit('.', 1)[0]


# ----------------------------------------------------------------------------
# Module renaming, rule by rule.
# ----------------------------------------------------------------------------
Rule = Tuple['re.Pattern[str]', Callable[['re.Match[str]'], str]]
_BLOCK_LAYER = r'(?P<l>conv[123]|bn[123]|downsample_conv|downsample_bn)'


def _rule(pattern: str, fn) -> Rule:
  return re.compile(pattern), fn if callable(fn) else (lambda m, s=fn: m.expand(s))


def _block(layer: str) -> str:
  """A layer inside a Bottleneck / BasicBlock; the shortcut is Sequential(conv, bn)."""
  return {'downsample_conv': 'downsample.0', 'downsample_bn': 'downsample.1'}.get(layer, layer)


def _seq(kind: str) -> str:
  """Index inside a Sequential(conv, bn[, relu])."""
  return '0' if kind == 'conv' else '1'


def _transition(m) -> str:
  t, i = int(m['t']), int(m['i'])
  # transition{t} follows stage t, which has t branches. An existing branch whose width
  # changes is Sequential(conv, bn, relu); the new branch is a Sequential of those.
  if i < t:
    return f'transition{t}.{i}.{_seq(m["kind"])}'
  return f'transition{t}.{i}.0.{_seq(m["kind"])}'


def _fuse(m) -> str:
  base = f'stage{m["s"]}.{m["m"]}.fuse_layers.{m["i"]}.{m["j"]}'
  if m['k'] is None:   # j > i: Sequential(conv1x1, bn[, upsample])
    return f'{base}.{_seq(m["kind"])}'
  return f'{base}.{m["k"]}.{_seq(m["kind"])}'   # j < i: chain of Sequential(conv3x3, bn[, relu])


BACKBONE_RULES: List[Rule] = [
    _rule(r'(?P<l>conv[12]|bn[12])', r'\g<l>'),
    _rule(r'layer1_(?P<b>\d+)/' + _BLOCK_LAYER, lambda m: f'layer1.{m["b"]}.{_block(m["l"])}'),
    _rule(r'transition(?P<t>[123])/(?P<kind>conv|bn)(?P<i>\d)', _transition),
    _rule(r'stage(?P<s>[234])_(?P<m>\d+)/branch(?P<i>\d)_(?P<b>\d+)/' + _BLOCK_LAYER,
          lambda m: f'stage{m["s"]}.{m["m"]}.branches.{m["i"]}.{m["b"]}.{_block(m["l"])}'),
    _rule(r'stage(?P<s>[234])_(?P<m>\d+)/fuse(?P<i>\d)_(?P<j>\d)/(?P<kind>conv|bn)(?P<k>\d)?',
          _fuse),
]

_OCR = 'ocr_distri_head.object_context_block'
HEAD_RULES: Dict[str, List[Rule]] = {
    'cls': [
        _rule(r'incre(?P<i>\d)/' + _BLOCK_LAYER,
              lambda m: f'incre_modules.{m["i"]}.0.{_block(m["l"])}'),
        _rule(r'downsamp(?P<i>\d)_(?P<kind>conv|bn)',
              lambda m: f'downsamp_modules.{m["i"]}.{_seq(m["kind"])}'),
        _rule(r'final_(?P<kind>conv|bn)', lambda m: f'final_layer.{_seq(m["kind"])}'),
        _rule(r'classifier', 'classifier'),
    ],
    # last_layer = Sequential(conv1x1, BN, ReLU, conv1x1 -> classes)
    'seg': [_rule(r'conv', 'last_layer.0'), _rule(r'bn', 'last_layer.1'),
            _rule(r'classifier', 'last_layer.3')],
    # BN + ReLU pairs of the OCR module are Sequential(BN, ReLU), hence the '.1.0' indices.
    'ocr': [
        _rule(r'aux/conv', 'aux_head.0'), _rule(r'aux/bn', 'aux_head.1'),
        _rule(r'aux_classifier', 'aux_head.3'),
        _rule(r'conv3x3_ocr/(?P<kind>conv|bn)', lambda m: f'conv3x3_ocr.{_seq(m["kind"])}'),
        _rule(r'object_attention/(?P<f>f_pixel|f_object)0/conv', _OCR + r'.\g<f>.0'),
        _rule(r'object_attention/(?P<f>f_pixel|f_object)0/bn', _OCR + r'.\g<f>.1.0'),
        _rule(r'object_attention/(?P<f>f_pixel|f_object)1/conv', _OCR + r'.\g<f>.2'),
        _rule(r'object_attention/(?P<f>f_pixel|f_object)1/bn', _OCR + r'.\g<f>.3.0'),
        _rule(r'object_attention/(?P<f>f_down|f_up)/conv', _OCR + r'.\g<f>.0'),
        _rule(r'object_attention/(?P<f>f_down|f_up)/bn', _OCR + r'.\g<f>.1.0'),
        _rule(r'fuse/conv', 'ocr_distri_head.conv_bn_dropout.0'),
        _rule(r'fuse/bn', 'ocr_distri_head.conv_bn_dropout.1.0'),
        _rule(r'classifier', 'cls_head'),
    ],
    'pose': [_rule(r'final_layer', 'final_layer')],
    # The facial-landmark `head` = Sequential(conv1x1, BN, ReLU, conv1x1 -> landmarks).
    'landmark': [_rule(r'conv', 'head.0'), _rule(r'bn', 'head.1'),
                 _rule(r'classifier', 'head.3')],
    'features': [],
}
PYRAMID_RULES: Dict[str, List[Rule]] = {
    'mmdet': [_rule(r'reduction', 'reduction_conv.conv'),
              _rule(r'level(?P<k>\d)', r'fpn_convs.\g<k>.conv')],
    'mmdet-v1': [_rule(r'reduction', 'reduction_conv.conv'),
                 _rule(r'level(?P<k>\d)', r'fpn_conv.\g<k>')],
    'hrnet-det': [_rule(r'reduction', 'reduction_conv.0'),
                  _rule(r'level(?P<k>\d)', r'fpn_conv.\g<k>')],
}


def _apply(rules: List[Rule], module_path: str, where: str) -> str:
  for pattern, fn in rules:
    m = pattern.fullmatch(module_path)
    if m:
      return fn(m)
  raise ConversionError(f'no PyTorch name for the Flax module {where}/{module_path}; the '
                        'model structure changed without hrnet_jax/conversion/keymap.py')


def module_key(top: str, module_path: str, head: str, layout: Layout) -> str:
  """Full PyTorch module key of a Flax module under 'backbone' or 'head'."""
  if top == 'backbone':
    return layout.outer + layout.backbone + _apply(BACKBONE_RULES, module_path, top)
  if top != 'head':
    raise ConversionError(f'unexpected top-level Flax module {top!r} (expected backbone, head)')
  rules = PYRAMID_RULES[layout.pyramid] if head == 'pyramid' else HEAD_RULES[head]
  return layout.outer + layout.head + _apply(rules, module_path, top)


# Leaf names: Flax -> PyTorch, per collection.
_PARAM_LEAVES = {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias'}
_STAT_LEAVES = {'mean': 'running_mean', 'var': 'running_var'}


def entries(variables: Mapping[str, Any], head: str, layout: Layout) -> List[Entry]:
  """Every variable of a Flax model (real or `jax.eval_shape` arrays), mapped to PyTorch."""
  out = []
  for collection, leaves in (('params', _PARAM_LEAVES), ('batch_stats', _STAT_LEAVES)):
    tree = variables.get(collection) or {}
    for path, leaf in flax.traverse_util.flatten_dict(flax.core.unfreeze(tree)).items():
      path = tuple(str(p) for p in path)
      if path[-1] not in leaves:
        raise ConversionError(f'unexpected Flax variable {collection}/{"/".join(path)}')
      key = module_key(path[0], '/'.join(path[1:-1]), head, layout) + '.' + leaves[path[-1]]
      ndim = len(np.shape(leaf))
      kind = ('conv' if ndim == 4 else 'linear') if path[-1] == 'kernel' else 'vector'
      out.append(Entry(collection, path, key, kind))
  return out


def torch_shape(flax_shape: Tuple[int, ...], kind: str) -> Tuple[int, ...]:
  if kind == 'conv':     # HWIO -> OIHW
    h, w, i, o = flax_shape
    return (o, i, h, w)
  if kind == 'linear':   # (in, out) -> (out, in)
    return tuple(flax_shape[::-1])
  return tuple(flax_shape)


def to_flax(array: np.ndarray, kind: str) -> np.ndarray:
  if kind == 'conv':
    return np.ascontiguousarray(np.transpose(array, (2, 3, 1, 0)))
  if kind == 'linear':
    return np.ascontiguousarray(array.T)
  return np.asarray(array)


def to_torch(array: np.ndarray, kind: str) -> np.ndarray:
  if kind == 'conv':
    return np.ascontiguousarray(np.transpose(array, (3, 2, 0, 1)))
  if kind == 'linear':
    return np.ascontiguousarray(np.asarray(array).T)
  return np.ascontiguousarray(array)

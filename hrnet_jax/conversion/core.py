"""PyTorch state_dict -> Flax variables (strict) and back.

Strict means: every Flax variable is filled from a tensor of the right shape, and every
tensor of the file is either used or dropped for a reason listed in the result (BN
batch counters, the trainer's loss buffers, detector heads, a task head not wanted).
Anything else is one `ConversionError` naming the first offending keys.
"""
import dataclasses
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

import flax
import jax
import jax.numpy as jnp
import numpy as np

from hrnet_jax.conversion import detect, keymap, torch_io
from hrnet_jax.conversion.errors import ConversionError
from hrnet_jax.models import HRNet, create_model, model_options_dict

# Shapes of every variable come from tracing init on this input (nothing is computed).
_PROBE_SHAPE = (1, 64, 64, 3)
_SHOWN = 2   # offending keys named per kind of problem in an error

IGNORE_BN_COUNTER = 'BatchNorm num_batches_tracked counters (unused: the momentum is fixed)'
IGNORE_LOSS = "the segmentation trainer's loss buffers (loss.*, class weights)"
IGNORE_DETECTOR = 'detector layers after the neck (RPN / RoI heads): no Flax counterpart'
IGNORE_TASK_HEAD = "the file's task head (head 'features' keeps the backbone only)"
IGNORE_MMSEG = 'mmsegmentation decode / auxiliary heads: no Flax counterpart'


@dataclasses.dataclass
class Conversion:
  model: HRNet
  variables: Dict[str, Any]          # {'params', 'batch_stats'} of numpy arrays
  metadata: Dict[str, Any]           # for hrnet_jax.checkpointing.save_model
  ignored: Dict[str, List[str]]      # reason -> source keys dropped on purpose
  dropped: List[str]                 # container entries besides the weights (epoch, ...)
  num_tensors: int                   # tensors used


def load_source(path_or_state_dict: Any, *, unsafe_pickle: bool = False) -> detect.Source:
  if isinstance(path_or_state_dict, (str, os.PathLike)):
    path = os.fspath(path_or_state_dict)
    return detect.make_source(torch_io.read_file(path, unsafe_pickle=unsafe_pickle), path)
  return detect.make_source(path_or_state_dict, '<state_dict>')


def _ignore_reason(key: str, layout: keymap.Layout, head: str) -> Optional[str]:
  if key.endswith('.num_batches_tracked'):
    return IGNORE_BN_COUNTER
  if key.startswith('loss.'):
    return IGNORE_LOSS
  if layout.name == 'mmseg' and not key.startswith(layout.backbone):
    return IGNORE_MMSEG
  inner = detect.strip_layout(key, layout)
  if inner is None:
    return IGNORE_DETECTOR if layout.backbone else None
  if head == 'features' and inner.startswith(keymap.HEAD_KEY_PREFIXES):
    return IGNORE_TASK_HEAD
  return None


def _shape(shape) -> str:
  return str(tuple(int(d) for d in shape))


def _listing(items: List[str]) -> str:
  more = f' (+{len(items) - _SHOWN} more)' if len(items) > _SHOWN else ''
  return ', '.join(items[:_SHOWN]) + more


def _fit_error(name, description, mismatched, missing, unexpected, detected, file_head
               ) -> ConversionError:
  parts = []
  if mismatched:
    parts.append('shape mismatch ' + _listing(
        [f'{k} file {_shape(a)} vs model {_shape(b)}' for k, a, b in mismatched]))
  if missing:
    parts.append('missing ' + _listing([f'{k} {_shape(s)}' for k, s in missing]))
  if unexpected:
    parts.append('unused ' + _listing([f'{k} {_shape(s)}' for k, s in unexpected]))
  hint = ('the file is not an official HRNet layout this converter knows' if detected else
          f'pass --model/--head/--num-classes that match the file (its head tensors are '
          f'{file_head!r}), or leave them out to detect them')
  return ConversionError(f'{name} does not fit {description}: {"; ".join(parts)}; {hint}')


_Rank = Dict[Tuple[str, Tuple[str, ...]], int]


def _trace_init(model: HRNet) -> Tuple[Dict[str, Any], _Rank]:
  """Abstract variables of `model`, and the creation rank of each (collection, path).

  Creation order is the official module order (conv1, bn1, ..., branches before fuse
  layers); it is only visible while tracing, since pytrees come out key-sorted.
  """
  order = []

  def init(x):
    variables = model.init(jax.random.key(0), x, train=False)
    for c in ('params', 'batch_stats'):
      order.extend((c, tuple(str(p) for p in path)) for path in
                   flax.traverse_util.flatten_dict(flax.core.unfreeze(variables.get(c, {}))))
    return variables

  abstract = jax.eval_shape(init, jax.ShapeDtypeStruct(_PROBE_SHAPE, jnp.float32))
  rank = {item: i for i, item in enumerate(order)}
  return abstract, rank


def _ordered_entries(variables, head: str, layout: keymap.Layout, rank: _Rank
                     ) -> List[keymap.Entry]:
  for c in ('params', 'batch_stats'):
    for path in flax.traverse_util.flatten_dict(flax.core.unfreeze(variables.get(c) or {})):
      if (c, tuple(str(p) for p in path)) not in rank:
        raise ConversionError(f'variable {c}/{"/".join(map(str, path))} does not belong to '
                              'the model the metadata describes')
  found = keymap.entries(variables, head, layout)
  return sorted(found, key=lambda e: rank[(e.collection, e.path)])


def convert(path_or_state_dict: Any, *, model: Optional[str] = None,
            head: Optional[str] = None, num_classes: Optional[int] = None,
            family: Optional[str] = None, upsample: Optional[str] = None,
            align_corners: Optional[bool] = None, bn_momentum: Optional[float] = None,
            unsafe_pickle: bool = False, **create_kwargs) -> Conversion:
  """Converts an official checkpoint (file or state_dict) into a Flax model + variables.

  Model, head, class count and family are detected from keys and shapes; each argument
  given overrides the detection. `create_kwargs` go to `create_model` (dtype, head
  options such as head_conv_bias).
  """
  source = load_source(path_or_state_dict, unsafe_pickle=unsafe_pickle)
  layout_name = detect.detect_layout(source.tensors)
  layout = keymap.LAYOUTS[layout_name]
  shapes = {}
  for key, value in source.tensors.items():
    inner = detect.strip_layout(key, layout)
    if inner is not None:
      shapes[inner] = tuple(value.shape)
  file_head = detect.detect_head(shapes)
  guessed = model is None and head is None and num_classes is None
  model_name = model or detect.detect_variant(shapes, source.name)
  head = head or file_head
  if head == file_head:
    file_classes, file_head_options = detect.detect_head_config(file_head, shapes, layout,
                                                                source.name)
    create_kwargs = {**file_head_options, **create_kwargs}
    if num_classes is None:
      num_classes = file_classes
  family = family or detect.detect_family(file_head, layout_name, source.name)
  if family not in detect.FAMILIES:
    raise ConversionError(f'unknown family {family!r}; valid: {", ".join(detect.FAMILIES)}')
  options = dict(detect.FAMILIES[family][1])
  options.update({k: v for k, v in dict(upsample=upsample, align_corners=align_corners,
                                          bn_momentum=bn_momentum).items() if v is not None})
  try:
    net = create_model(model_name, head=head, num_classes=num_classes, **options,
                       **create_kwargs)
  except (ValueError, TypeError) as e:
    raise ConversionError(f'{source.name}: {e}') from None

  abstract, rank = _trace_init(net)
  flat_abstract = {c: flax.traverse_util.flatten_dict(flax.core.unfreeze(abstract.get(c, {})))
                   for c in ('params', 'batch_stats')}
  filled = {'params': {}, 'batch_stats': {}}
  used, mismatched, missing = set(), [], []
  for entry in _ordered_entries(abstract, head, layout, rank):
    leaf = flat_abstract[entry.collection][entry.path]
    expected = keymap.torch_shape(tuple(leaf.shape), entry.kind)
    array = source.tensors.get(entry.key)
    if array is None:
      missing.append((entry.key, expected))
      continue
    if tuple(array.shape) != expected:
      mismatched.append((entry.key, tuple(array.shape), expected))
      continue
    filled[entry.collection][entry.path] = keymap.to_flax(array, entry.kind).astype(leaf.dtype)
    used.add(entry.key)

  ignored, unexpected = {}, []
  mismatched_keys = {k for k, _, _ in mismatched}
  for key, value in source.tensors.items():
    if key in used or key in mismatched_keys:
      continue
    reason = _ignore_reason(key, layout, head)
    if reason is None:
      unexpected.append((key, tuple(value.shape)))
    else:
      ignored.setdefault(reason, []).append(key)
  if mismatched or missing or unexpected:
    # The file's order is the official module order; name its first problems first.
    position = {k: i for i, k in enumerate(source.tensors)}
    mismatched.sort(key=lambda item: position[item[0]])
    description = f'{model_name} with the {head!r} head' + (
        f' ({net.num_classes} classes)' if net.num_classes is not None else '')
    raise _fit_error(source.name, description, mismatched, missing, unexpected,
                     detected=guessed, file_head=file_head)

  variables = {c: flax.traverse_util.unflatten_dict(filled[c]) if filled[c] else {}
               for c in filled}
  metadata = dict(
      model=model_name, head=head, num_classes=net.num_classes,
      options=model_options_dict(net),
      source=(f'{os.path.basename(source.name)} ({detect.FAMILIES[family][0]}), converted by '
              'hrnet_jax.convert'),
      family=family, torch_layout=layout_name)
  return Conversion(net, variables, metadata, ignored, source.dropped, len(used))


def from_torch(path_or_state_dict: Any, **overrides) -> Tuple[HRNet, Dict[str, Any]]:
  """(model, variables) from an official .pth file or state_dict, ready for model.apply.

  Overrides: model, head, num_classes, family, upsample, align_corners, bn_momentum,
  unsafe_pickle, and create_model keywords (dtype, head_conv_bias, ...).
  """
  result = convert(path_or_state_dict, **overrides)
  return result.model, result.variables


def _as_torch_array(value: Any) -> np.ndarray:
  array = np.asarray(value)
  if array.dtype.kind == 'f' and array.dtype not in (np.float16, np.float32, np.float64):
    array = array.astype(np.float32)   # bfloat16 has no torch.from_numpy path
  return array


def torch_state_dict(variables: Mapping[str, Any], metadata: Mapping[str, Any]
                     ) -> Dict[str, np.ndarray]:
  """The official-layout state_dict (numpy arrays) of Flax variables.

  The key layout is the one recorded at conversion (`torch_layout`), else the official
  one of the head; keys come in the official module order. BN `num_batches_tracked`
  counters, not tracked here, are written as 0.
  """
  head = metadata['head']
  options = {k: v for k, v in (metadata.get('options') or {}).items() if v is not None}
  classes = None if head in ('pyramid', 'features') else metadata.get('num_classes')
  try:
    net = create_model(metadata['model'], head=head, num_classes=classes, **options)
  except (KeyError, ValueError, TypeError) as e:
    raise ConversionError(f'the metadata does not describe a model ({e})') from None
  abstract, rank = _trace_init(net)
  layout_name = metadata.get('torch_layout') or keymap.DEFAULT_LAYOUT[head]
  if layout_name not in keymap.LAYOUTS:
    raise ConversionError(f'unknown torch_layout {layout_name!r} in the metadata; valid: '
                          f'{", ".join(keymap.LAYOUTS)}')
  flat = {c: flax.traverse_util.flatten_dict(flax.core.unfreeze(variables.get(c) or {}))
          for c in ('params', 'batch_stats')}
  flat = {c: {tuple(str(p) for p in path): v for path, v in tree.items()}
          for c, tree in flat.items()}
  entries = _ordered_entries(variables, head, keymap.LAYOUTS[layout_name], rank)
  present = {(e.collection, e.path) for e in entries}
  absent = [item for item in rank if item not in present]
  if absent:
    raise ConversionError(f'the variables lack {len(absent)} of the {len(rank)} variables of '
                          f'{metadata["model"]}/{head}, first {"/".join(absent[0][1])}')
  expected = {c: flax.traverse_util.flatten_dict(flax.core.unfreeze(abstract.get(c) or {}))
              for c in ('params', 'batch_stats')}
  modules: Dict[str, Dict[str, np.ndarray]] = {}   # BN statistics join their module
  for entry in entries:
    value = _as_torch_array(flat[entry.collection][entry.path])
    shape = tuple(expected[entry.collection][entry.path].shape)
    if value.shape != shape:
      raise ConversionError(f'{entry.collection}/{"/".join(entry.path)} has shape '
                            f'{_shape(value.shape)}, the model {_shape(shape)}')
    group = modules.setdefault(entry.module_key, {})
    group[entry.key] = keymap.to_torch(value, entry.kind)
    if entry.collection == 'batch_stats' and entry.path[-1] == 'var':
      group[entry.module_key + '.num_batches_tracked'] = np.zeros((), np.int64)
  return {k: v for group in modules.values() for k, v in group.items()}


def export_torch(directory: str, out_path: str, *, which: str = 'latest'
                 ) -> Tuple[Dict[str, Any], int]:
  """Writes the official-layout .pth of a Flax model directory or training workdir."""
  from hrnet_jax import checkpointing  # pylint: disable=g-import-not-at-top
  torch_io.import_torch()   # fail before the (slow) restore when torch is missing
  variables, metadata = checkpointing.load_model(directory, which=which)
  state_dict = torch_state_dict(variables, metadata)
  torch_io.write_state_dict(out_path, state_dict)
  return metadata, len(state_dict)

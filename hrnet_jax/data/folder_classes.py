"""The class file of a user's segmentation folder (`data.name=folder`): names, colours,
raw mask values.

One line per class, in training-id order (the first line is class 0):

    # comments and blank lines are skipped
    road
    sidewalk       : 244 35 232          # colour (R G B, R,G,B or #rrggbb)
    building       : #464646 = 11 12     # colour, then the raw mask values of the class
    traffic light  = 19
    ignore         = 0 255               # raw values not trained (void)
    ignore         : 0 0 0               # colour of void pixels in colour masks

Without any `= values`, mask value i is class i. Without an `ignore` line, value 255 is
ignored. Colours serve the pictures and map colour masks (RGB PNGs) to classes; a class
without a colour gets one from the palette of the other datasets. No TensorFlow here.
"""
from __future__ import annotations

import dataclasses
import os
import re

import numpy as np

from hrnet_jax.data.errors import DataError

IGNORE_LABEL = 255
IGNORE_NAME = 'ignore'
# Names tried in the dataset folder when config.data.classes is not set.
CLASS_FILE_NAMES = ('classes.txt', 'class_names.txt', 'labels.txt')
_MAX_CLASSES = 255   # labels are stored as uint8 maps with 255 = ignore


@dataclasses.dataclass(frozen=True)
class ClassTable:
  """What the class file says.

  Attributes:
    names: one name per class, in training-id order.
    colours: one (R, G, B) per class, or None where the file gives none.
    values: raw mask value -> class id (every class listed), or {} for the identity.
    ignore_values: raw mask values that become the ignore label.
    ignore_colours: colours of void pixels in colour masks.
    text: the file's bytes (part of the dataset's fingerprint).
    path: where it was read from.
  """
  names: tuple[str, ...]
  colours: tuple[tuple[int, int, int] | None, ...]
  values: dict[int, int]
  ignore_values: frozenset[int]
  ignore_colours: frozenset[tuple[int, int, int]]
  text: bytes
  path: str

  @property
  def num_classes(self) -> int:
    return len(self.names)

  @property
  def has_colours(self) -> bool:
    return any(c is not None for c in self.colours)

  def value_lut(self, max_value: int) -> np.ndarray:
    """(max_value + 1,) int32: raw value -> class id, 255 = ignore, -1 = not in the file."""
    lut = np.full((max_value + 1,), -1, np.int32)
    mapping = self.values or {i: i for i in range(self.num_classes)}
    for raw, cls in mapping.items():
      if raw <= max_value:
        lut[raw] = cls
    for raw in self.ignore_values:
      if raw <= max_value:
        lut[raw] = IGNORE_LABEL
    return lut

  def colour_table(self) -> dict[int, int]:
    """Packed colour (R << 16 | G << 8 | B) -> class id (255 = ignore)."""
    table = {(r << 16) | (g << 8) | b: IGNORE_LABEL for r, g, b in self.ignore_colours}
    for cls, colour in enumerate(self.colours):
      if colour is not None:
        r, g, b = colour
        table[(r << 16) | (g << 8) | b] = cls
    return table


def find_class_file(root: str, path: str | None = None) -> str:
  """The class file: `path` (relative to `root` or absolute), else a standard name in root."""
  if path:
    full = path if os.path.isabs(path) else os.path.join(root, path)
    if not os.path.isfile(full):
      raise DataError(f'class file {full} (config.data.classes) does not exist')
    return full
  for name in CLASS_FILE_NAMES:
    full = os.path.join(root, name)
    if os.path.isfile(full):
      return full
  raise DataError(f'{root} has no class file ({" or ".join(CLASS_FILE_NAMES)}): write one '
                  'class name per line, in class-id order (see docs/custom_data.md), or '
                  'set config.data.classes')


def _colour(text: str, where: str) -> tuple[int, int, int]:
  text = text.strip()
  if text.startswith('#') and re.fullmatch(r'#[0-9a-fA-F]{6}', text):
    return tuple(int(text[i:i + 2], 16) for i in (1, 3, 5))
  parts = [p for p in re.split(r'[\s,]+', text) if p]
  if len(parts) == 3 and all(p.isdigit() and int(p) < 256 for p in parts):
    return tuple(int(p) for p in parts)
  raise DataError(f'{where}: colour {text!r} is not "R G B" (0-255) or #rrggbb')


def _values(text: str, where: str) -> list[int]:
  parts = [p for p in re.split(r'[\s,]+', text.strip()) if p]
  if not parts or not all(p.isdigit() for p in parts):
    raise DataError(f'{where}: raw values {text!r} must be non-negative integers '
                    'separated by spaces or commas')
  return [int(p) for p in parts]


def parse_class_file(path: str) -> ClassTable:
  """Reads and validates the class file; every mistake is one line naming file:line."""
  with open(path, 'rb') as f:
    file_bytes = f.read()
  try:
    text = file_bytes.decode('utf-8-sig')
  except UnicodeDecodeError as e:
    raise DataError(f'{path}: not UTF-8 text ({e})') from e
  names, colours, values_of = [], [], []
  ignore_values, ignore_colours, saw_ignore = set(), set(), False
  for number, line in enumerate(text.splitlines(), 1):
    where = f'{path}:{number}'
    # A '#' starts a comment unless it is a #rrggbb colour.
    line = re.sub(r'(^|\s)#(?![0-9a-fA-F]{6}\b).*$', '', line).strip()
    if not line:
      continue
    line, _, values_text = line.partition('=')
    name, _, colour_text = line.partition(':')
    name = name.strip()
    if not name:
      raise DataError(f'{where}: a line needs a class name before ":" or "="')
    colour = _colour(colour_text, where) if colour_text.strip() else None
    values = _values(values_text, where) if values_text.strip() else None
    if name.lower() == IGNORE_NAME:
      saw_ignore = True
      ignore_values.update(values or ())
      if colour is not None:
        ignore_colours.add(colour)
      continue
    if name in names:
      raise DataError(f'{where}: class {name!r} is listed twice (first as class '
                      f'{names.index(name)})')
    names.append(name)
    colours.append(colour)
    values_of.append(values)
  if not names:
    raise DataError(f'{path}: no classes; write one class name per line')
  if len(names) > _MAX_CLASSES:
    raise DataError(f'{path}: {len(names)} classes; at most {_MAX_CLASSES} are supported '
                    '(labels are 8-bit with 255 = ignore)')
  given = [v is not None for v in values_of]
  if any(given) and not all(given):
    missing = [n for n, v in zip(names, values_of) if v is None]
    raise DataError(f'{path}: some classes give raw mask values ("= v") and some do not '
                    f'({", ".join(missing[:5])}); give values for every class or for none')
  mapping: dict[int, int] = {}
  for cls, values in enumerate(values_of):
    for raw in values or ():
      if raw in mapping:
        raise DataError(f'{path}: raw value {raw} is given to both {names[mapping[raw]]!r} '
                        f'and {names[cls]!r}')
      mapping[raw] = cls
  both = sorted(set(mapping) & ignore_values)
  if both:
    raise DataError(f'{path}: raw values {both} are both a class and ignored')
  if not saw_ignore and IGNORE_LABEL not in mapping:
    ignore_values = {IGNORE_LABEL}
  if not any(given) and ignore_values & set(range(len(names))):
    clash = sorted(ignore_values & set(range(len(names))))
    raise DataError(f'{path}: ignored values {clash} are also class ids (mask value i = '
                    'class i when no "= values" are given)')
  seen: dict[tuple[int, int, int], str] = {}
  for name, colour in zip(names, colours):
    if colour is not None:
      if colour in seen or colour in ignore_colours:
        raise DataError(f'{path}: colour {colour} is given to {name!r} and to '
                        f'{seen.get(colour, IGNORE_NAME)!r}')
      seen[colour] = name
  return ClassTable(names=tuple(names), colours=tuple(colours), values=mapping,
                    ignore_values=frozenset(ignore_values),
                    ignore_colours=frozenset(ignore_colours), text=file_bytes, path=path)


def palette(table: ClassTable) -> np.ndarray:
  """(num_classes, 3) uint8: the file's colours, the rest from the usual palettes."""
  from hrnet_jax.data import registry  # pylint: disable=g-import-not-at-top
  n = table.num_classes
  if table.names == registry.CITYSCAPES_CLASSES:
    fallback = np.asarray(registry.CITYSCAPES_PALETTE, np.uint8)
  else:
    fallback = registry._voc_palette(n + 1)[1:]   # pylint: disable=protected-access
  out = fallback.copy()
  for i, colour in enumerate(table.colours):
    if colour is not None:
      out[i] = colour
  return out

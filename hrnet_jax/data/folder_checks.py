"""Reading, converting and checking the files of a user's segmentation folder.

Every image and mask is decoded in full with Pillow before anything is built, so a
truncated or unreadable file, an image/mask size mismatch, a mask value or colour that
the class file does not name, or an input that cannot be converted sensibly becomes one
line naming the file(s), and nothing reaches the TFDS data_dir.

Conversions (reported, not refused): grayscale and palette images -> RGB; 16-bit images
-> 8 bits (value / 257, the full 16-bit range onto 0..255); RGBA with an all-opaque alpha
-> RGB; EXIF orientation applied (OpenCV, which decodes our stored images, would apply it
to the image but the mask has none); 16-bit masks -> class ids through the class file;
grey RGB masks (R = G = B) -> their one channel. Refused: transparent pixels (what lies
under them is undefined), float images, colour masks without colours in the class file.
8-bit RGB JPEG and PNG images are stored as their original bytes; everything else as
PNG of the converted pixels; masks as single-channel PNGs of class ids (255 = ignore).
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import io
import os

from absl import logging
import cv2
import numpy as np
from PIL import Image, ImageOps

from hrnet_jax.data.errors import DataError
from hrnet_jax.data.folder_classes import IGNORE_LABEL, ClassTable
from hrnet_jax.data.folder_layout import Layout, name_some

_LINES_PER_KIND = 5   # problem lines of one kind before "and N more"


class FolderCheckError(DataError):
  """The folder failed its checks; `problems` holds one line per problem.

  Its message is one line, as the CLIs print errors: the first problem and how many
  more there are (`log` writes every line; `python -m hrnet_jax.data.folder
  --check_only` prints them).
  """

  def __init__(self, root: str, problems: list[str]):
    self.root, self.problems = root, list(problems)
    more = len(self.problems) - 1
    super().__init__(self.problems[0] + (
        f' (and {more} more problems with {root}, each on its own line above)'
        if more > 0 else ''))

  def log(self) -> FolderCheckError:
    for line in self.problems:
      logging.error('%s', line)
    return self


class Refused(Exception):
  """A file that is read fine but cannot be used; the message names it and the fix."""

  def __init__(self, kind: str, message: str):
    super().__init__(message)
    self.kind = kind


def open_image(path: str, what: str) -> tuple[bytes, Image.Image]:
  """(file bytes, fully decoded PIL image); an unreadable file raises `Refused`."""
  try:
    with open(path, 'rb') as f:
      data = f.read()
    image = Image.open(io.BytesIO(data))
    image.load()   # decodes everything: a truncated file fails here, not in training
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise Refused('unreadable', f'{path}: cannot read this {what} ({e}); replace or '
                   'remove it') from e
  return data, image


def _png(array: np.ndarray) -> bytes:
  if array.ndim == 3:
    array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
  ok, buf = cv2.imencode('.png', array, [cv2.IMWRITE_PNG_COMPRESSION, 1])
  assert ok
  return buf.tobytes()


def _opaque(image: Image.Image, path: str, what: str) -> np.ndarray:
  """RGB pixels of an image with an alpha channel, which must be all opaque."""
  rgba = np.asarray(image.convert('RGBA'))
  transparent = int((rgba[..., 3] < 255).sum())
  if transparent:
    raise Refused('transparent', f'{path}: {what} has {transparent} transparent pixels '
                   '(alpha < 255), whose colour is undefined; flatten it onto a background '
                   'and save it without alpha')
  return rgba[..., :3]


def _sixteen_bit(image: Image.Image, path: str) -> np.ndarray:
  values = np.asarray(image).astype(np.int64)
  if values.min() < 0 or values.max() > 65535:
    raise Refused('format', f'{path}: 32-bit image with values {values.min()}..'
                   f'{values.max()}; save it as an 8-bit image')
  return ((values + 128) // 257).astype(np.uint8)   # round(v * 255 / 65535)


def encode_image(path: str) -> tuple[bytes, str, tuple[int, int]]:
  """(bytes to store, what was converted or '', (h, w)) of one image file."""
  data, image = open_image(path, 'image')
  note = []
  if image.getexif().get(0x0112, 1) != 1:   # EXIF orientation
    image = ImageOps.exif_transpose(image)
    note.append('EXIF orientation applied')
  mode = image.mode
  size = (image.height, image.width)
  # Pillow reads 16-bit RGB PNGs as 8-bit RGB (the high bytes): re-encode those.
  deep_png = image.format == 'PNG' and len(data) > 24 and data[24] == 16
  if mode == 'RGB' and image.format in ('JPEG', 'PNG') and not note and not deep_png:
    return data, '', size
  if mode in ('RGBA', 'LA', 'PA') or (mode == 'P' and 'transparency' in image.info):
    pixels = _opaque(image, path, 'the image')
    note.append('opaque alpha dropped')
  elif mode.startswith('I;16') or mode == 'I':
    pixels = np.repeat(_sixteen_bit(image, path)[..., None], 3, axis=-1)
    note.append('16-bit grey scaled to 8 bits')
  elif mode == 'L':
    pixels = np.repeat(np.asarray(image)[..., None], 3, axis=-1)
    note.append('grey copied to RGB')
  elif mode == 'RGB':
    pixels = np.asarray(image)
    if deep_png:
      note.append('16-bit RGB reduced to 8 bits')
    elif image.format not in ('JPEG', 'PNG'):
      note.append(f'{image.format} stored as PNG')
  elif mode in ('P', 'CMYK', 'YCbCr', '1', 'LAB', 'HSV'):
    pixels = np.asarray(image.convert('RGB'))
    note.append(f'{mode} converted to RGB')
  else:
    raise Refused('format', f'{path}: images of mode {mode!r} (e.g. float) are not '
                   'supported; save it as an 8-bit RGB, grey or 16-bit image')
  return _png(np.ascontiguousarray(pixels)), ', '.join(note), size


@dataclasses.dataclass
class DecodedMask:
  """A mask as class ids, with the raw values (or colours) the class file does not name."""
  label: np.ndarray            # uint8 (h, w): class ids, 255 = ignore
  note: str
  unknown: tuple[str, ...]     # raw values ('19') or colours ('#ff0000')
  lossy: bool                  # a JPEG mask: unknown values are probably artefacts


def decode_mask(path: str, classes: ClassTable) -> DecodedMask:
  """Reads a mask of raw values (8/16-bit, palette indices) or colours into class ids."""
  _, image = open_image(path, 'mask')
  mode, note = image.mode, ''
  if mode in ('RGB', 'RGBA', 'LA'):
    rgb = (_opaque(image, path, 'the mask') if mode in ('RGBA', 'LA')
           else np.asarray(image))
    if classes.has_colours:
      return _decode_colours(rgb, classes, image.format == 'JPEG')
    if not ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()):
      raise Refused('format', f'{path}: colour mask, but {classes.path} gives no colours; '
                     'add "name : R G B" to each class there, or save masks as '
                     'single-channel PNGs of class values')
    values, note = rgb[..., 0], 'grey RGB mask: one channel used'
  elif mode in ('L', 'P', '1'):
    values = np.asarray(image).astype(np.uint8)   # palette PNGs: the index is the value
  elif mode.startswith('I;16') or mode == 'I':
    values = np.asarray(image).astype(np.int64)
    if values.min() < 0 or values.max() > 65535:
      raise Refused('format', f'{path}: mask values {values.min()}..{values.max()} are out '
                     'of the 16-bit range; save class values as an 8- or 16-bit PNG')
  else:
    raise Refused('format', f'{path}: masks of mode {mode!r} are not supported; save class '
                   'values as a single-channel 8-bit PNG')
  lut = classes.value_lut(max(int(values.max()), IGNORE_LABEL))
  ids = lut[values]
  unknown = tuple(str(v) for v in np.unique(values[ids < 0]))
  return DecodedMask(np.where(ids < 0, IGNORE_LABEL, ids).astype(np.uint8), note, unknown,
                     image.format == 'JPEG')


def _decode_colours(rgb: np.ndarray, classes: ClassTable, lossy: bool) -> DecodedMask:
  packed = ((rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8)
            | rgb[..., 2])
  colours, inverse = np.unique(packed, return_inverse=True)
  table = classes.colour_table()
  ids = np.array([table.get(int(c), -1) for c in colours], np.int32)
  label = ids[inverse.reshape(packed.shape)]
  unknown = tuple(f'#{int(c):06x}' for c, i in zip(colours, ids) if i < 0)
  return DecodedMask(np.where(label < 0, IGNORE_LABEL, label).astype(np.uint8),
                     'colours mapped', unknown, lossy)


def encode_mask(path: str, classes: ClassTable) -> bytes:
  """The stored form of a mask: a single-channel PNG of class ids."""
  return _png(decode_mask(path, classes).label)


def _check_pair(root: str, image_rel: str, mask_rel: str, classes: ClassTable):
  """Problems (kind, message), conversion notes, unknown values, lossy flag, image size."""
  problems, notes = [], []
  image_path, mask_path = os.path.join(root, image_rel), os.path.join(root, mask_rel)
  image_size = mask = None
  try:
    _, note, image_size = encode_image(image_path)
    if note:
      notes.append((f'image: {note}', image_rel))
  except Refused as e:
    problems.append((e.kind, str(e)))
  try:
    mask = decode_mask(mask_path, classes)
    if mask.note:
      notes.append((f'mask: {mask.note}', mask_rel))
  except Refused as e:
    problems.append((e.kind, str(e)))
  if image_size and mask is not None and mask.label.shape != image_size:
    problems.append(('size', f'{image_path} is {image_size[0]}x{image_size[1]} but its mask '
                     f'{mask_path} is {mask.label.shape[0]}x{mask.label.shape[1]}; image '
                     'and mask must have the same size'))
  unknown = mask.unknown if mask is not None else ()
  return (problems, notes, unknown, bool(mask is not None and mask.lossy),
          image_size)


@dataclasses.dataclass
class CheckReport:
  """What the checks found in a folder that passed them."""
  conversions: dict[str, list[str]]   # what was converted -> the files
  image_sizes: set[tuple[int, int]]   # every (h, w) seen

  def lines(self) -> list[str]:
    return [f'{note}: {len(files)} files ({name_some(files)})'
            for note, files in sorted(self.conversions.items())]


def check_folder(layout: Layout, classes: ClassTable, *, num_threads: int = 4
                 ) -> CheckReport:
  """Decodes every pair; raises FolderCheckError listing all problems, one per line."""
  problems = list(layout.problems)
  pairs = [p for split in layout.splits.values() for p in split]
  by_kind: dict[str, list[str]] = collections.defaultdict(list)
  conversions: dict[str, list[str]] = collections.defaultdict(list)
  unknown: dict[str, list[str]] = collections.defaultdict(list)
  lossy, sizes = False, set()
  with concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as pool:
    results = pool.map(lambda p: _check_pair(layout.root, p.image, p.mask, classes), pairs)
    for pair, (pair_problems, notes, pair_unknown, pair_lossy, size) in zip(pairs, results):
      sizes.add(size)
      for kind, message in pair_problems:
        by_kind[kind].append(message)
      for note, rel in notes:
        conversions[note].append(rel)
      for value in pair_unknown:
        unknown[value].append(pair.mask)
      lossy |= pair_lossy and bool(pair_unknown)
  for kind in ('unreadable', 'format', 'transparent', 'size'):
    lines = by_kind.get(kind, [])
    problems += lines[:_LINES_PER_KIND]
    if len(lines) > _LINES_PER_KIND:
      problems.append(f'... and {len(lines) - _LINES_PER_KIND} more files like the line '
                      'above')
  if unknown:
    def order(v):
      return (1, int(v[1:], 16)) if v.startswith('#') else (0, int(v))
    parts = [f'{v} ({len(unknown[v])} files: {name_some(unknown[v])})'
             for v in sorted(unknown, key=order)[:10]]
    more = f' and {len(unknown) - 10} more values' if len(unknown) > 10 else ''
    hint = (' (JPEG masks are lossy: save masks as PNG)' if lossy else '')
    problems.append(f'masks hold values not in {classes.path}: {"; ".join(parts)}{more}; '
                    'add them to a class ("= values" or ": colour") or to the "ignore" line'
                    + hint)
  if problems:
    raise FolderCheckError(layout.root, problems)
  return CheckReport(dict(conversions), sizes)

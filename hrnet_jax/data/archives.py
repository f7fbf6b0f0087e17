"""Shared pieces of our TFDS builders that read the official release archives.

The builders check every example while building (decodable image and label, equal sizes),
so a broken download fails once, at build time, with the file named.
"""
from __future__ import annotations

import os
from typing import Iterable

import cv2
import numpy as np
from PIL import Image

from hrnet_jax.data.errors import DataError


def find_dir(roots: Iterable[str], relative: str, what: str) -> str:
  """The first directory (sorted walk) whose path ends with `relative` ('a/b' or 'b').

  Archives are extracted under hashed names and some releases nest their top folder
  twice, so we search rather than assume one layout.
  """
  roots = [os.fspath(r) for r in roots]
  parts = tuple(relative.strip('/').split('/'))
  for root in roots:
    for dirpath, dirnames, _ in os.walk(root):
      dirnames.sort()
      if tuple(dirpath.rstrip('/').split(os.sep)[-len(parts):]) == parts:
        return dirpath
  raise DataError(f'{what}: no directory {relative!r} inside {", ".join(roots)}; the '
                  'archive does not have the layout of the official release')


def encode_png(array: np.ndarray) -> bytes:
  ok, buf = cv2.imencode('.png', array)
  if not ok:
    raise DataError(f'cannot encode an array of shape {array.shape} as PNG')
  return buf.tobytes()


def read_label(path: str) -> np.ndarray:
  """A label map as uint8 (h, w): grey PNGs as they are, palette PNGs as their indices."""
  if not os.path.exists(path):
    raise DataError(f'{path}: label file missing for an image of the release; '
                    're-download the annotation archive')
  try:
    with Image.open(path) as pil:
      if pil.mode not in ('L', 'P', 'I;16', 'I'):
        raise DataError(f'{path}: label image has mode {pil.mode}; expected a single-channel '
                        'class-index PNG')
      label = np.asarray(pil)
  except (OSError, SyntaxError) as e:
    raise DataError(f'{path}: cannot decode the label image ({e}); replace the file') from e
  if label.max(initial=0) > 255:
    raise DataError(f'{path}: label values up to {label.max()} do not fit in 8 bits')
  return label.astype(np.uint8)


def checked_image(path: str, label_shape: tuple[int, int]) -> bytes:
  """The encoded image bytes after checking that they decode to `label_shape`."""
  if not os.path.exists(path):
    raise DataError(f'{path}: image file missing for a label of the release; '
                    're-download the image archive')
  with open(path, 'rb') as f:
    data = f.read()
  shape = _decoded_shape(data)
  if shape is None:
    raise DataError(f'{path}: cannot decode the image (corrupt or truncated file); '
                    're-download the archive')
  if shape != tuple(label_shape):
    raise DataError(f'{path}: image is {shape[0]}x{shape[1]} but its label is '
                    f'{label_shape[0]}x{label_shape[1]}')
  return data


def _decoded_shape(data: bytes) -> tuple[int, int] | None:
  # OpenCV, as the pipeline decodes with it: what passes here decodes there.
  array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
  return None if array is None else array.shape[:2]


def paired_examples(image_dir: str, label_dir: str):
  """(id, features) for every image of `image_dir` and its `<id>.png` in `label_dir`."""
  for name in sorted(os.listdir(image_dir)):
    image_id, ext = os.path.splitext(name)
    if ext.lower() not in ('.jpg', '.jpeg', '.png'):
      continue
    label = read_label(os.path.join(label_dir, image_id + '.png'))
    image = checked_image(os.path.join(image_dir, name), label.shape)
    yield image_id, {'image': image, 'label': encode_png(label), 'image_id': image_id}

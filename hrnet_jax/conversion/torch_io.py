"""Reading and writing PyTorch checkpoint files; the only module that imports torch.

torch is imported inside the functions, so the rest of hrnet_jax (and a conversion
from a state_dict of numpy arrays) works without it. Tensors become numpy arrays at
the border: everything after this module is torch-free.
"""
import os
import re
import zipfile
from typing import Any, Dict, Mapping

import numpy as np

from hrnet_jax.conversion.errors import ConversionError

TORCH_PIN = 'torch==2.14.1'
_PICKLE_PROTOCOL_BYTE = b'\x80'   # legacy (PyTorch < 1.6) files are one pickle stream
_ZIP_MAGIC = b'PK\x03\x04'


def import_torch():
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ConversionError(f'PyTorch is needed to read .pth files: pip install {TORCH_PIN}') \
        from None
  return torch


def _first_line(error: BaseException) -> str:
  text = str(error).strip().splitlines()
  return f'{type(error).__name__}: {text[0]}' if text else type(error).__name__


def to_numpy(value: Any) -> np.ndarray:
  """A torch tensor or array-like as numpy; half and bfloat16 become float32."""
  if hasattr(value, 'detach'):          # a torch.Tensor, without importing torch
    value = value.detach().cpu()
    if value.is_floating_point() and value.dtype.itemsize < 4:
      value = value.float()
    return value.numpy()
  return np.asarray(value)


def _read_safetensors(path: str) -> Dict[str, np.ndarray]:
  try:
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ConversionError('reading .safetensors files needs the safetensors package: '
                          'pip install safetensors') from None
  try:
    return load_file(path)
  except Exception as e:  # safetensors raises its own error types
    raise ConversionError(f'{path}: not a readable safetensors file ({_first_line(e)}); '
                          'it may be truncated, download it again') from None


def read_file(path: str, *, unsafe_pickle: bool = False) -> Any:
  """The object stored in a .pth / .pth.tar / .safetensors file (tensors left as torch).

  `unsafe_pickle` allows arbitrary pickled Python objects (torch.load's
  weights_only=False): only for files from a trusted source.
  """
  path = os.path.expanduser(str(path))
  if not os.path.isfile(path):
    raise ConversionError(f'{path}: no such file')
  if os.path.getsize(path) == 0:
    raise ConversionError(f'{path}: the file is empty (an interrupted download?)')
  if path.endswith('.safetensors'):
    return _read_safetensors(path)
  with open(path, 'rb') as f:
    head = f.read(4)
  is_zip = head == _ZIP_MAGIC
  if not is_zip and not head.startswith(_PICKLE_PROTOCOL_BYTE):
    raise ConversionError(f'{path}: not a PyTorch checkpoint (neither a torch.save zip '
                          f'archive nor a legacy pickle; it starts with {head!r})')
  if is_zip and not zipfile.is_zipfile(path):
    raise ConversionError(f'{path}: truncated or corrupt checkpoint (the zip archive has no '
                          'central directory); download it again')
  torch = import_torch()
  try:
    # mmap: large files are paged in as the tensors are converted, not read twice.
    return torch.load(path, map_location='cpu', weights_only=not unsafe_pickle,
                      mmap=is_zip)
  except EOFError:
    raise ConversionError(f'{path}: truncated checkpoint (the data ends early); download it '
                          'again') from None
  except Exception as e:  # torch.load raises RuntimeError, UnpicklingError, KeyError...
    found = re.search(r'Unsupported global: GLOBAL (\S+)', str(e))
    if found:
      raise ConversionError(
          f'{path}: holds Python objects besides tensors ({found.group(1)}), which the safe '
          'loader refuses; if you trust the file, run again with --unsafe-pickle '
          '(from_torch(..., unsafe_pickle=True))') from None
    raise ConversionError(f'{path}: not a readable PyTorch checkpoint ({_first_line(e)}); '
                          'it may be truncated or not a checkpoint') from None


def write_state_dict(path: str, state_dict: Mapping[str, np.ndarray]) -> None:
  """torch.save of {key: tensor}, loadable with torch.load(weights_only=True)."""
  torch = import_torch()
  # asarray, not ascontiguousarray: the latter turns 0-d counters into shape (1,).
  tensors = {k: torch.from_numpy(np.asarray(v, order='C')) for k, v in state_dict.items()}
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  torch.save(tensors, path)

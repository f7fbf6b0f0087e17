"""The model metadata every checkpoint carries: what `create_model` needs to rebuild it."""
from __future__ import annotations

from typing import Any

from hrnet_jax.checkpointing.errors import CheckpointError

METADATA_FILE = 'metadata.json'
VARIABLES_DIR = 'variables'
REQUIRED_METADATA = ('model', 'head', 'num_classes', 'options', 'source')


def check_metadata(metadata: dict[str, Any], where: str) -> dict[str, Any]:
  """`metadata` if it has the keys create_model needs, else CheckpointError."""
  missing = [k for k in REQUIRED_METADATA if k not in metadata]
  if missing:
    raise CheckpointError(f'{where}: metadata lacks {missing}; it needs the keys '
                          f'{list(REQUIRED_METADATA)}.')
  return metadata

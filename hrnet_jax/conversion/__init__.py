"""Official PyTorch HRNet checkpoints <-> Flax variables (see docs/convert.md).

The command line is `python -m hrnet_jax.convert`.
"""
from hrnet_jax.conversion.core import (Conversion, convert, export_torch, from_torch,
                                       torch_state_dict)
from hrnet_jax.conversion.detect import FAMILIES
from hrnet_jax.conversion.errors import ConversionError
from hrnet_jax.conversion.keymap import DEFAULT_LAYOUT, LAYOUTS

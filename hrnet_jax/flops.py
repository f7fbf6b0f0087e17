"""Model complexity without allocating the model: parameters and multiply-adds.

The official HRNet READMEs report "GFLOPs" as the multiply-adds of conv and linear layers
divided by 2^30, for a batch of one; `gflops` follows that convention so the published
figures can be compared directly.
"""
import inspect
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from hrnet_jax.models.layers import Conv2d, Linear


def _abstract_init(model: nn.Module, input_hw: Sequence[int], channels: int = 3):
  images = jax.ShapeDtypeStruct((1, int(input_hw[0]), int(input_hw[1]), channels),
                                jnp.float32)
  # Inference mode where the module has one (HRNet and its parts); plain layers have none.
  kwargs = {'train': False} if 'train' in inspect.signature(type(model).__call__).parameters else {}
  return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, **kwargs), images)


def count_params(model: nn.Module, input_hw: Sequence[int] = (224, 224)) -> int:
  """Number of trainable parameters (BatchNorm running statistics excluded, as torch)."""
  variables = _abstract_init(model, input_hw)
  return int(sum(np.prod(v.shape) for v in jax.tree_util.tree_leaves(variables['params'])))


def count_macs(model: nn.Module, input_hw: Sequence[int]) -> int:
  """Multiply-adds of all conv and linear layers for one image of size `input_hw`."""
  total = []

  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    module = context.module
    if context.method_name == '__call__' and isinstance(module, (Conv2d, Linear)):
      x = args[0]
      if isinstance(module, Conv2d):
        # Every output element costs k*k*C_in multiply-adds (bias not counted).
        total.append(int(np.prod(out.shape)) * module.kernel_size ** 2 * x.shape[-1])
      else:
        total.append(int(np.prod(out.shape)) * x.shape[-1])
    return out

  with nn.intercept_methods(interceptor):
    _abstract_init(model, input_hw)
  return sum(total)


def gflops(model: nn.Module, input_hw: Sequence[int]) -> float:
  """Multiply-adds / 2^30, the 'GFLOPs' of the official HRNet READMEs."""
  return count_macs(model, input_hw) / 2 ** 30

"""The HRNet backbone: stem, stage 1, and stages 2-4 of multi-resolution modules.

Parameter names follow the official code's structure (`conv1`, `layer1_0`,
`transition1_1`, `stage3_2`, `branch1_3`, `fuse0_2`) so that conversion from the
PyTorch checkpoints is a fixed renaming.
"""
from typing import List, Sequence

import flax.linen as nn
import jax

from hrnet_jax.models.blocks import BasicBlock, Bottleneck
from hrnet_jax.models.layers import (BatchNorm, Conv2d, ModelOptions, residual_output,
                                     upsample_to)
from hrnet_jax.models.remat import remat
from hrnet_jax.models.specs import VariantSpec


class FuseLayer(nn.Module):
  """Carries input branch j to the resolution and width of output branch i."""
  in_index: int
  out_index: int
  in_channels: int
  out_channels: int
  opts: ModelOptions = ModelOptions()

  @nn.compact
  def __call__(self, x: jax.Array, target_size, train: bool) -> jax.Array:
    o, i, j = self.opts, self.out_index, self.in_index
    if j > i:
      # Lower resolution: conv1x1 + BN at the low resolution, then upsample.
      y = Conv2d(self.out_channels, 1, opts=o, name='conv')(x)
      y = BatchNorm(o, name='bn')(y, train)
      return upsample_to(y, target_size, o)
    # Higher resolution: (i - j) stride-2 conv3x3; only the last one changes the width
    # and it has no ReLU (the ReLU comes after the sum).
    y = x
    for k in range(i - j):
      last = k == i - j - 1
      y = Conv2d(self.out_channels if last else self.in_channels, 3, 2, opts=o,
                 name=f'conv{k}')(y)
      y = BatchNorm(o, name=f'bn{k}')(y, train)
      if not last:
        y = nn.relu(y)
    return y


class HighResolutionModule(nn.Module):
  """Parallel branches of Basic blocks, then repeated multi-resolution fusion (sum)."""
  num_blocks: Sequence[int]
  channels: Sequence[int]
  multi_scale_output: bool = True
  opts: ModelOptions = ModelOptions()

  @nn.compact
  def __call__(self, xs: List[jax.Array], train: bool) -> List[jax.Array]:
    o = self.opts
    if len(xs) != len(self.channels):
      raise ValueError(f'{self.name}: expected {len(self.channels)} branches, got {len(xs)}')
    branches = []
    for i, (x, n, c) in enumerate(zip(xs, self.num_blocks, self.channels)):
      for b in range(n):
        x = BasicBlock(c, opts=o, name=f'branch{i}_{b}')(x, train)
      branches.append(x)
    num_out = len(branches) if self.multi_scale_output else 1
    outs = []
    for i in range(num_out):
      size = branches[i].shape[1:3]
      total = None
      for j, x in enumerate(branches):
        if j != i:
          x = FuseLayer(j, i, self.channels[j], self.channels[i], opts=o,
                        name=f'fuse{i}_{j}')(x, size, train)
        total = x if total is None else total + x
      outs.append(residual_output(total))
    return outs


class Transition(nn.Module):
  """Between stages: re-width branches whose width changes, add the new lowest branch."""
  in_channels: Sequence[int]
  out_channels: Sequence[int]
  opts: ModelOptions = ModelOptions()

  @nn.compact
  def __call__(self, xs: List[jax.Array], train: bool) -> List[jax.Array]:
    o = self.opts
    outs = []
    for i, c in enumerate(self.out_channels):
      if i < len(self.in_channels):
        x = xs[i]
        if self.in_channels[i] != c:
          x = Conv2d(c, 3, opts=o, name=f'conv{i}')(x)
          x = nn.relu(BatchNorm(o, name=f'bn{i}')(x, train))
      else:
        # A new branch comes from the lowest-resolution existing branch, stride 2.
        x = Conv2d(c, 3, 2, opts=o, name=f'conv{i}')(xs[-1])
        x = nn.relu(BatchNorm(o, name=f'bn{i}')(x, train))
      outs.append(x)
    return outs


class HRNetBackbone(nn.Module):
  """Returns the branch outputs of stage 4, highest resolution (1/4) first.

  Attributes:
    spec: the variant.
    multi_scale_output: False for the pose model, whose last module fuses into the
      highest-resolution branch only (one output).
    remat: recompute each multi-resolution module in the backward pass (saves memory).
  """
  spec: VariantSpec
  multi_scale_output: bool = True
  remat: bool = False
  opts: ModelOptions = ModelOptions()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> List[jax.Array]:
    o, spec = self.opts, self.spec
    x = nn.relu(BatchNorm(o, name='bn1')(Conv2d(64, 3, 2, opts=o, name='conv1')(x), train))
    x = nn.relu(BatchNorm(o, name='bn2')(Conv2d(64, 3, 2, opts=o, name='conv2')(x), train))
    for b in range(spec.stage1_blocks):
      x = Bottleneck(spec.stage1_planes, opts=o, name=f'layer1_{b}')(x, train)

    module_cls = HighResolutionModule
    if self.remat:
      module_cls = remat(HighResolutionModule, static_argnums=(2,))
    xs, prev_channels = [x], (spec.stage1_channels,)
    for s, stage in enumerate(spec.stages):
      xs = Transition(prev_channels, stage.channels, opts=o, name=f'transition{s + 1}')(
          xs, train)
      for m in range(stage.num_modules):
        last = s == len(spec.stages) - 1 and m == stage.num_modules - 1
        xs = module_cls(stage.num_blocks, stage.channels,
                        multi_scale_output=self.multi_scale_output or not last,
                        opts=o, name=f'stage{s + 2}_{m}')(xs, train)
      prev_channels = stage.channels
    return xs

"""Representation heads of the paper (Fig. 4) and the official code: V2 segmentation,
V2p pyramid, HRNet-C classification, V1 pose and the V2 facial-landmark head. The OCR
head is in `ocr.py`."""
from typing import List, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from hrnet_jax.models.blocks import Bottleneck
from hrnet_jax.models.layers import (BatchNorm, Conv2d, Linear, ModelOptions, at_least_f32,
                                     concat_branches)


class SegHead(nn.Module):
  """HRNetV2: concat of the four branches (15C), conv1x1 + BN + ReLU, conv1x1 -> classes.

  Logits come out at 1/4 of the input resolution, as in the official code.
  """
  num_classes: int
  opts: ModelOptions = ModelOptions()

  @nn.compact
  def __call__(self, xs: List[jax.Array], train: bool) -> jax.Array:
    o = self.opts
    feats = concat_branches(xs, o)
    y = Conv2d(feats.shape[-1], 1, use_bias=True, opts=o, name='conv')(feats)
    y = nn.relu(BatchNorm(o, name='bn')(y, train))
    return Conv2d(self.num_classes, 1, use_bias=True, opts=o, name='classifier')(y)


class PyramidHead(nn.Module):
  """HRNetV2p: concat, conv1x1 -> `channels`, average pooling to 5 levels, conv3x3 each.

  Levels have strides 4, 8, 16, 32, 64 relative to the input.
  """
  channels: int = 256
  num_levels: int = 5
  opts: ModelOptions = ModelOptions()

  @nn.compact
  def __call__(self, xs: List[jax.Array], train: bool) -> Tuple[jax.Array, ...]:
    del train  # no BatchNorm in this head
    o = self.opts
    y = Conv2d(self.channels, 1, use_bias=True, opts=o, name='reduction')(
        concat_branches(xs, o))
    levels = []
    for k in range(self.num_levels):
      p = y if k == 0 else nn.avg_pool(y, (2 ** k, 2 ** k), (2 ** k, 2 ** k), 'VALID')
      levels.append(Conv2d(self.channels, 3, use_bias=True, opts=o, name=f'level{k}')(p))
    return tuple(levels)


class ClsHead(nn.Module):
  """HRNet-C: a Bottleneck per branch (widths 32..256, x4), a stride-2 chain adding the
  branches from high to low resolution, conv1x1 -> 2048, global pool, linear.

  `head_conv_bias=False` matches the "ssld" checkpoints, whose head convs have no bias.
  """
  num_classes: int = 1000
  head_conv_bias: bool = True
  opts: ModelOptions = ModelOptions()
  incre_planes: Tuple[int, ...] = (32, 64, 128, 256)

  @nn.compact
  def __call__(self, xs: List[jax.Array], train: bool) -> jax.Array:
    o = self.opts
    ys = [Bottleneck(p, opts=o, name=f'incre{i}')(x, train)
          for i, (p, x) in enumerate(zip(self.incre_planes, xs))]
    y = ys[0]
    for i in range(1, len(ys)):
      y = Conv2d(self.incre_planes[i] * 4, 3, 2, use_bias=self.head_conv_bias, opts=o,
                 name=f'downsamp{i - 1}_conv')(y)
      y = nn.relu(BatchNorm(o, name=f'downsamp{i - 1}_bn')(y, train))
      y = ys[i] + y
    y = Conv2d(2048, 1, use_bias=self.head_conv_bias, opts=o, name='final_conv')(y)
    y = nn.relu(BatchNorm(o, name='final_bn')(y, train))
    pooled = jnp.mean(y.astype(at_least_f32(y.dtype)), axis=(1, 2)).astype(o.dtype)
    return Linear(self.num_classes, opts=o, name='classifier')(pooled)


class PoseHead(nn.Module):
  """HRNetV1 for pose: the highest-resolution branch, conv1x1 (with bias) -> heatmaps.

  The bias starts at 0, as pose_hrnet's init_weights sets every conv bias.
  """
  num_joints: int = 17
  opts: ModelOptions = ModelOptions()

  @nn.compact
  def __call__(self, xs: List[jax.Array], train: bool) -> jax.Array:
    del train
    return Conv2d(self.num_joints, 1, use_bias=True, zero_bias=True, opts=self.opts,
                  name='final_layer')(xs[0])


class LandmarkHead(SegHead):
  """HRNetV2 facial landmarks (HRNet-Facial-Landmark-Detection `head`): the same layers
  as the V2 segmentation head (concat of the four branches, conv1x1 + bias, BN, ReLU,
  conv1x1 -> one heatmap per landmark), kept as its own class because its checkpoints
  name them `head.0`, `head.1`, `head.3` and its family has other numerics.

  `num_classes` is the number of landmarks (98 WFLW, 68 300W, 29 COFW, 19 AFLW).
  """

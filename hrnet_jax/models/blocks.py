"""Residual units of HRNet: the Bottleneck of stage 1 and the Basic block of stages 2-4."""
import flax.linen as nn
import jax

from hrnet_jax.models.layers import BatchNorm, Conv2d, ModelOptions, residual_output


class BasicBlock(nn.Module):
  """Two 3x3 conv + BN, residual sum, ReLU. Output width: `planes`."""
  planes: int
  stride: int = 1
  opts: ModelOptions = ModelOptions()
  expansion = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    o = self.opts
    y = Conv2d(self.planes, 3, self.stride, opts=o, name='conv1')(x)
    y = nn.relu(BatchNorm(o, name='bn1')(y, train))
    y = Conv2d(self.planes, 3, opts=o, name='conv2')(y)
    y = BatchNorm(o, name='bn2')(y, train)
    return residual_output(y + _shortcut(x, self.planes, self.stride, o, train))


class Bottleneck(nn.Module):
  """1x1 reduce, 3x3, 1x1 expand (x4), each + BN, residual sum, ReLU."""
  planes: int
  stride: int = 1
  opts: ModelOptions = ModelOptions()
  expansion = 4

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    o = self.opts
    y = Conv2d(self.planes, 1, opts=o, name='conv1')(x)
    y = nn.relu(BatchNorm(o, name='bn1')(y, train))
    y = Conv2d(self.planes, 3, self.stride, opts=o, name='conv2')(y)
    y = nn.relu(BatchNorm(o, name='bn2')(y, train))
    y = Conv2d(self.planes * 4, 1, opts=o, name='conv3')(y)
    y = BatchNorm(o, name='bn3')(y, train)
    return residual_output(y + _shortcut(x, self.planes * 4, self.stride, o, train))


def _shortcut(x, width, stride, opts, train):
  """Identity, or conv1x1 + BN where the width or resolution changes (`downsample`).

  Called inside the parent's compact method, so its layers are the parent's children.
  """
  if stride == 1 and x.shape[-1] == width:
    return x
  y = Conv2d(width, 1, stride, opts=opts, name='downsample_conv')(x)
  return BatchNorm(opts, name='downsample_bn')(y, train)

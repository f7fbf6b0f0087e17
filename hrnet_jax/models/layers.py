"""The primitive layers of HRNet: convolution, BatchNorm, linear, fusion upsampling.

All layers take one `ModelOptions` so dtype, BatchNorm and upsampling conventions stay
consistent across a model and can be switched per model family.
"""
import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from hrnet_jax.models import batch_norm, initializers, resize

Dtype = Any


def at_least_f32(dtype) -> Any:
  """The dtype of statistics, softmaxes and losses: float32 under bf16/f16/f32 compute,
  float64 when the model computes in float64 (parity runs under jax_enable_x64)."""
  return jnp.promote_types(dtype, jnp.float32)


@dataclasses.dataclass(frozen=True)
class ModelOptions:
  """Numerics and faithfulness switches shared by every layer of one model.

  Attributes:
    dtype: computation dtype (bfloat16 on accelerators); BatchNorm statistics and the
      softmaxes stay float32 regardless.
    param_dtype: dtype of the parameters.
    bn_momentum: in PyTorch's convention, new = (1 - m) * old + m * batch
      (0.01 in the `pytorch-v1.1` segmentation code, 0.1 elsewhere).
    bn_eps: BatchNorm epsilon.
    upsample: 'nearest' (classification, pose, timm) or 'bilinear' (segmentation) for the
      low-to-high resolution paths of the fusion layers.
    align_corners: for bilinear resizing (False in `pytorch-v1.1`, True in `HRNet-OCR`).
    conv_init: 'normal' (std 0.001, the segmentation and pose code) or 'kaiming'
      (fan-out normal, the classification code).
    conv1x1: how 1x1 convolutions run (same parameters either way): 'conv'
      (lax.conv_general_dilated), 'dot' (a matmul over the channels; its gradients are
      matmuls too, which XLA:CPU runs 1.2x-5x faster than the convolution's, see
      docs/performance.md), or 'auto': 'dot' on a CPU backend, 'conv' elsewhere.
  """
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  bn_momentum: float = 0.1
  bn_eps: float = 1e-5
  upsample: str = 'bilinear'
  align_corners: bool = False
  conv_init: str = 'normal'
  conv1x1: str = 'auto'

  def __post_init__(self):
    if self.upsample not in ('nearest', 'bilinear'):
      raise ValueError(f"upsample must be 'nearest' or 'bilinear', got {self.upsample!r}")
    if self.conv_init not in ('normal', 'kaiming'):
      raise ValueError(f"conv_init must be 'normal' or 'kaiming', got {self.conv_init!r}")
    if self.conv1x1 not in ('auto', 'conv', 'dot'):
      raise ValueError(f"conv1x1 must be 'auto', 'conv' or 'dot', got {self.conv1x1!r}")
    if not 0.0 <= self.bn_momentum <= 1.0:
      raise ValueError(f'bn_momentum (PyTorch convention) must be in [0, 1], '
                       f'got {self.bn_momentum}')

  def kernel_init(self):
    if self.conv_init == 'normal':
      return initializers.Normal(0.001)
    return initializers.KaimingNormalFanOut()


class Conv2d(nn.Module):
  """k x k convolution with PyTorch's symmetric padding k // 2 (not XLA's 'SAME').

  'SAME' pads a stride-2 conv on an even input (0, 1); PyTorch pads (1, 1). The
  difference shifts every downsampled map by half a pixel and breaks weight parity.
  """
  features: int
  kernel_size: int = 3
  stride: int = 1
  use_bias: bool = False
  zero_bias: bool = False   # the bias starts at 0 (pose_hrnet), else torch's default
  opts: ModelOptions = ModelOptions()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, cin = self.kernel_size, x.shape[-1]
    kernel = initializers.param(self, 'kernel', self.opts.kernel_init(),
                                (k, k, cin, self.features), self.opts.param_dtype)
    pad = k // 2
    dtype = self.opts.dtype
    if k == 1 and _one_by_one_as_dot(self.opts):
      # Stride s without padding keeps rows/columns 0, s, 2s, ... as torch does.
      xs = x[:, ::self.stride, ::self.stride] if self.stride > 1 else x
      y = jax.lax.dot_general(xs.astype(dtype), kernel[0, 0].astype(dtype),
                              (((3,), (0,)), ((), ())))
    else:
      y = jax.lax.conv_general_dilated(
          x.astype(dtype), kernel.astype(dtype), (self.stride, self.stride),
          ((pad, pad), (pad, pad)), dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    if self.use_bias:
      bias_init = (nn.initializers.zeros if self.zero_bias
                   else initializers.torch_default_bias(cin * k * k))
      bias = initializers.param(self, 'bias', bias_init, (self.features,),
                                self.opts.param_dtype)
      y = y + bias.astype(dtype)
    return y


def _one_by_one_as_dot(opts: ModelOptions) -> bool:
  if opts.conv1x1 == 'auto':
    return jax.default_backend() == 'cpu'
  return opts.conv1x1 == 'dot'


class Linear(nn.Module):
  """Fully connected layer initialised as torch.nn.Linear."""
  features: int
  opts: ModelOptions = ModelOptions()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    fan_in = x.shape[-1]
    kernel = initializers.param(self, 'kernel', initializers.torch_default_bias(fan_in),
                                (fan_in, self.features), self.opts.param_dtype)
    bias = initializers.param(self, 'bias', initializers.torch_default_bias(fan_in),
                              (self.features,), self.opts.param_dtype)
    dtype = self.opts.dtype
    return x.astype(dtype) @ kernel.astype(dtype) + bias.astype(dtype)


class BatchNorm(nn.Module):
  """BatchNorm over all axes but the last, with PyTorch's running-statistics update.

  Differs from flax.linen.BatchNorm where parity needs it: momentum in PyTorch's
  convention, the running variance updated with the unbiased batch variance (as
  torch does), two-pass variance in float32 (or wider, see at_least_f32). Under `jax.jit` with the batch sharded
  over a mesh the batch mean is global: SyncBN without any collective written here.
  """
  opts: ModelOptions = ModelOptions()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    channels = x.shape[-1]
    scale = self.param('scale', nn.initializers.ones, (channels,), self.opts.param_dtype)
    bias = self.param('bias', nn.initializers.zeros, (channels,), self.opts.param_dtype)
    wide = at_least_f32(self.opts.dtype)
    stats_dtype = at_least_f32(self.opts.param_dtype)
    running_mean = self.variable('batch_stats', 'mean', jnp.zeros, (channels,), stats_dtype)
    running_var = self.variable('batch_stats', 'var', jnp.ones, (channels,), stats_dtype)
    if train:
      # XLA:CPU gets the hand-written backward: fewer thunks, a shorter trace and compile
      # (docs/performance.md, "Fewer thunks in the train step"; measured there only).
      # Its statistics here then feed only the running averages, which carry no gradient.
      hand_written = jax.default_backend() == 'cpu'
      mean, var = batch_norm.moments(jax.lax.stop_gradient(x) if hand_written else x, wide)
      if not self.is_initializing():
        count = int(np.prod(x.shape[:-1]))
        m = self.opts.bn_momentum
        unbiased = var * (count / max(count - 1, 1))
        running_mean.value = (1.0 - m) * running_mean.value + m * mean
        running_var.value = (1.0 - m) * running_var.value + m * unbiased
      if hand_written:
        return batch_norm.normalize_train(x, scale, bias, self.opts.bn_eps, wide,
                                          self.opts.dtype)
    else:
      mean, var = running_mean.value, running_var.value
    return batch_norm.affine(x, mean, var, scale, bias, self.opts.bn_eps, wide,
                             self.opts.dtype)


@jax.custom_jvp
def _computed_once(x: jax.Array) -> jax.Array:
  # x / 1 with the 1 computed elementwise from x, so XLA cannot fold it away: XLA:CPU's
  # fusion counts a float division as expensive and never duplicates it into several
  # consumers, so the value is stored once instead of recomputed (with everything it
  # reads) inside each consumer. Exact: x / 1.0 is x, NaN and infinities included.
  return x / jnp.sign(jnp.abs(x) + 1)


@_computed_once.defjvp
def _computed_once_jvp(primals, tangents):
  return _computed_once(primals[0]), tangents[0]


def residual_output(x: jax.Array) -> jax.Array:
  """ReLU of a residual sum (a block's or a fusion's output), stored once on the CPU.

  An HRNet branch is a chain of blocks whose outputs are elementwise in the previous
  block's output; XLA:CPU's loop fusion copies such cheap producers into every
  consumer, and the consumers that feed the weight gradients then recompute the whole
  residual chain back to the stem (docs/performance.md). Ending each link with an op
  the fusion will not duplicate cuts the chain at every block and keeps fusion on.
  Other backends fuse differently and get the plain ReLU.
  """
  y = nn.relu(x)
  if jax.default_backend() == 'cpu':
    return _computed_once(y)
  return y


def upsample_to(x: jax.Array, size, opts: ModelOptions) -> jax.Array:
  """Resize a lower-resolution branch to `size` the way the model family does."""
  if opts.upsample == 'nearest':
    return resize.resize_nearest(x, size)
  return resize.resize_bilinear(x, size, align_corners=opts.align_corners).astype(x.dtype)


def concat_branches(xs, opts: ModelOptions) -> jax.Array:
  """HRNetV2 representation: branches 2-4 bilinearly upsampled to branch 1, concatenated.

  The official heads always use bilinear here, whatever the fusion upsampling is.
  """
  size = xs[0].shape[1:3]
  ups = [xs[0]] + [
      resize.resize_bilinear(x, size, align_corners=opts.align_corners).astype(xs[0].dtype)
      for x in xs[1:]]
  return jnp.concatenate(ups, axis=-1)

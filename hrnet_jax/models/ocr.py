"""HRNet + OCR (object-contextual representations), as the `HRNet-OCR` branch.

The aux head's soft object regions pool the pixel features into one vector per class;
each pixel then attends over those class vectors and the attended context is fused
with the pixel features before the classifier.
"""
from typing import Dict, List

import flax.linen as nn
import jax
import jax.numpy as jnp

from hrnet_jax.models.layers import (BatchNorm, Conv2d, ModelOptions, at_least_f32,
                                     concat_branches)


class ConvBNReLU(nn.Module):
  features: int
  kernel_size: int = 1
  use_bias: bool = False
  opts: ModelOptions = ModelOptions()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    y = Conv2d(self.features, self.kernel_size, use_bias=self.use_bias, opts=self.opts,
               name='conv')(x)
    return nn.relu(BatchNorm(self.opts, name='bn')(y, train))


def spatial_gather(feats: jax.Array, region_logits: jax.Array) -> jax.Array:
  """One feature vector per class: features averaged with softmax-over-pixels weights.

  Returns (N, K, 1, C): the official code keeps the class vectors as a K x 1 "image".
  """
  n, h, w, c = feats.shape
  k = region_logits.shape[-1]
  wide = at_least_f32(feats.dtype)
  weights = jax.nn.softmax(region_logits.reshape(n, h * w, k).astype(wide), axis=1)
  ctx = jnp.einsum('npk,npc->nkc', weights, feats.reshape(n, h * w, c).astype(wide))
  return ctx.reshape(n, k, 1, c).astype(feats.dtype)


class ObjectAttention(nn.Module):
  """Pixels (queries) attend over class vectors (keys/values); similarity / sqrt(key)."""
  key_channels: int = 256
  opts: ModelOptions = ModelOptions()

  @nn.compact
  def __call__(self, x: jax.Array, proxy: jax.Array, train: bool) -> jax.Array:
    o, kc = self.opts, self.key_channels
    n, h, w, c = x.shape
    q = ConvBNReLU(kc, opts=o, name='f_pixel0')(x, train)
    q = ConvBNReLU(kc, opts=o, name='f_pixel1')(q, train)
    key = ConvBNReLU(kc, opts=o, name='f_object0')(proxy, train)
    key = ConvBNReLU(kc, opts=o, name='f_object1')(key, train)
    value = ConvBNReLU(kc, opts=o, name='f_down')(proxy, train)
    wide = at_least_f32(o.dtype)
    q = q.reshape(n, h * w, kc).astype(wide)
    key = key.reshape(n, -1, kc).astype(wide)
    value = value.reshape(n, -1, kc).astype(wide)
    sim = jax.nn.softmax(jnp.einsum('npc,nkc->npk', q, key) * kc ** -0.5, axis=-1)
    context = jnp.einsum('npk,nkc->npc', sim, value).reshape(n, h, w, kc).astype(o.dtype)
    return ConvBNReLU(c, opts=o, name='f_up')(context, train)


class OCRHead(nn.Module):
  """Returns {'logits', 'aux_logits'}, both at 1/4 resolution (loss 1.0 and 0.4)."""
  num_classes: int
  mid_channels: int = 512
  key_channels: int = 256
  dropout: float = 0.05
  opts: ModelOptions = ModelOptions()

  @nn.compact
  def __call__(self, xs: List[jax.Array], train: bool) -> Dict[str, jax.Array]:
    o = self.opts
    feats = concat_branches(xs, o)
    aux = ConvBNReLU(feats.shape[-1], use_bias=True, opts=o, name='aux')(feats, train)
    aux = Conv2d(self.num_classes, 1, use_bias=True, opts=o, name='aux_classifier')(aux)
    feats = ConvBNReLU(self.mid_channels, 3, use_bias=True, opts=o, name='conv3x3_ocr')(
        feats, train)
    proxy = spatial_gather(feats, aux)
    context = ObjectAttention(self.key_channels, opts=o, name='object_attention')(
        feats, proxy, train)
    y = ConvBNReLU(self.mid_channels, opts=o, name='fuse')(
        jnp.concatenate([context, feats], axis=-1), train)
    # Dropout2d: whole channels are dropped, hence broadcast over H and W.
    y = nn.Dropout(self.dropout, broadcast_dims=(1, 2), deterministic=not train)(y)
    logits = Conv2d(self.num_classes, 1, use_bias=True, opts=o, name='classifier')(y)
    return {'logits': logits, 'aux_logits': aux}

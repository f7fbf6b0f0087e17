r"""Whole-model effect of the convolution formulation: forward and forward+backward of an
HRNet whose stride-1 3x3 convolutions run as XLA's convolution or as one of
`hrnet_jax.models.winograd`'s, side by side in one process, interleaved.

The formulation is swapped in by intercepting `Conv2d` (flax `intercept_methods`), so
the parameters are the model's own and the library is unchanged:
  xla        lax.conv_general_dilated (the library);
  winograd2  / winograd4: winograd.conv3x3 F(2x2) / F(4x4), forward and backward;
  wgrad2     / wgrad4: XLA forward and input gradient, Winograd weight gradient;
  auto       winograd4 where the map has >= 32 4x4 tiles, XLA elsewhere;
  dot1x1     ModelOptions.conv1x1='dot' (1x1 convolutions as matmuls), 3x3 by XLA.
Every other variant, 'xla' included, runs the 1x1 convolutions as convolutions
(conv1x1='conv'), so 'xla' is the library before any of these levers.

Every variant is compiled first; then the variants run in turn (A, B, C, A, B, C, ...)
--repeats times and the medians are compared with 'xla' (ratio = XLA time / variant
time, > 1: faster). Outputs and gradients are compared with the 'xla' variant
(max |a - b| / max |b| over each leaf).

  python benchmarks/model_conv_impl.py --model=hrnet_w48 --size=256,512
  python benchmarks/model_conv_impl.py --model=hrnet_w18_small_v2 --impls=xla,auto,winograd2
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import statistics
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, __file__.rsplit('/', 2)[0])
import hrnet_jax  # pylint: disable=g-import-not-at-top,wrong-import-position
from hrnet_jax.models import winograd  # pylint: disable=g-import-not-at-top,wrong-import-position
from hrnet_jax.models.layers import Conv2d  # pylint: disable=g-import-not-at-top,wrong-import-position
from random_weights import random_variables  # pylint: disable=g-import-not-at-top,wrong-import-position

MIN_TILES = 32   # 'auto': Winograd F(4x4) where N * ceil(H/4) * ceil(W/4) >= this


def _formulation(impl, shape):
  """The conv function replacing XLA's for a stride-1 3x3 conv of input `shape`, or None."""
  if impl == 'xla':
    return None
  if impl == 'auto':
    n, h, w = shape[:3]
    return (functools.partial(winograd.conv3x3, tile=4)
            if n * -(-h // 4) * -(-w // 4) >= MIN_TILES else None)
  fn = winograd.conv3x3_wgrad if impl.startswith('wgrad') else winograd.conv3x3
  return functools.partial(fn, tile=int(impl[-1]))


def _interceptor(impl):
  def intercept(next_fun, args, kwargs, context):
    if impl == 'dot1x1':
      return next_fun(*args, **kwargs)
    m = context.module
    if (context.method_name != '__call__' or not isinstance(m, Conv2d) or
        m.kernel_size != 3 or m.stride != 1 or m.is_initializing()):
      return next_fun(*args, **kwargs)
    conv = _formulation(impl, args[0].shape)
    if conv is None:
      return next_fun(*args, **kwargs)
    dtype = m.opts.dtype
    y = conv(args[0].astype(dtype), m.get_variable('params', 'kernel').astype(dtype))
    if m.use_bias:
      y = y + m.get_variable('params', 'bias').astype(dtype)
    return y
  return intercept


def _programs(model, impl):
  def apply(*args, **kwargs):
    with nn.intercept_methods(_interceptor(impl)):
      return model.apply(*args, **kwargs)

  fwd = jax.jit(lambda v, x: apply(v, x, train=False))

  def loss(params, stats, x):
    out, _ = apply({'params': params, 'batch_stats': stats}, x, train=True,
                   mutable=['batch_stats'])
    return jnp.mean(jnp.square(out.astype(jnp.float32)))
  grad = jax.jit(lambda v, x: jax.grad(loss)(v['params'], v['batch_stats'], x))
  return {'fwd': fwd, 'fwd_bwd': grad}


def _rel(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--model', default='hrnet_w48')
  parser.add_argument('--head', default='seg')
  parser.add_argument('--size', default='256,512')
  parser.add_argument('--batch', type=int, default=1)
  parser.add_argument('--impls', default='xla,auto,winograd2')
  parser.add_argument('--modes', default='fwd,fwd_bwd')
  parser.add_argument('--repeats', type=int, default=5)
  args = parser.parse_args(argv)
  h, w = (int(v) for v in args.size.split(','))
  impls = args.impls.split(',')
  if impls[0] != 'xla':
    impls = ['xla'] + [i for i in impls if i != 'xla']
  base = hrnet_jax.create_model(args.model, head=args.head)
  rng = np.random.default_rng(0)
  variables = random_variables(base, rng)
  x = jnp.asarray(rng.standard_normal((args.batch, h, w, 3)).astype(np.float32))
  print(f'{args.model} {args.head} {args.batch}x{h}x{w}, jax {jax.__version__} on '
        f'{jax.devices()[0].device_kind}, median of {args.repeats} interleaved runs '
        '(shared machine: ratios only)')
  print('| mode | formulation | ms | XLA ms | ratio | compile s | max rel. error vs xla |')
  print('|---|---|---|---|---|---|---|')
  for mode in args.modes.split(','):
    progs, outs, compile_s = {}, {}, {}
    for i in impls:
      conv1x1 = 'dot' if i == 'dot1x1' else 'conv'
      model = base.clone(opts=dataclasses.replace(base.opts, conv1x1=conv1x1))
      progs[i] = _programs(model, i)[mode]
      start = time.perf_counter()
      outs[i] = jax.block_until_ready(progs[i](variables, x))
      compile_s[i] = time.perf_counter() - start
    times = {i: [] for i in impls}
    for _ in range(args.repeats):
      for i in impls:
        start = time.perf_counter()
        jax.block_until_ready(progs[i](variables, x))
        times[i].append(time.perf_counter() - start)
    med = {i: statistics.median(t) for i, t in times.items()}
    for i in impls:
      err = max(_rel(a, b) for a, b in zip(jax.tree_util.tree_leaves(outs[i]),
                                           jax.tree_util.tree_leaves(outs['xla'])))
      print(f'| {mode} | {i} | {med[i] * 1e3:.1f} | {med["xla"] * 1e3:.1f} | '
            f'{med["xla"] / med[i]:.2f}x | {compile_s[i]:.1f} | {err:.1e} |', flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())

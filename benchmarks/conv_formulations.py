r"""Formulations of HRNet's convolutions against XLA's own, side by side in one process.

For each shape, every formulation is compiled first, then timed in interleaved order
(A, B, C, A, B, C, ... --repeats times) so that load from other programs hits all alike;
the figure is the median, and the ratio is XLA's time / the formulation's (> 1: the
formulation is faster). Each formulation's output and gradients are checked against
XLA's (max |a - b| / max |b|).

3x3 stride 1 (the Basic blocks, 2 x 4 per module per branch):
  xla        lax.conv_general_dilated, its autodiff backward;
  winograd2  hrnet_jax.models.winograd F(2x2, 3x3), Winograd backward;
  winograd4  the same with F(4x4, 3x3);
  im2col_vjp XLA's forward and input gradient, the weight gradient as 9 matmuls of
             shifted input windows with the output gradient (custom VJP);
  wgrad2/4   XLA's forward and input gradient, the weight gradient by Winograd
             (winograd.conv3x3_wgrad).
1x1 (fuse layers, Bottlenecks, the head):
  xla        lax.conv_general_dilated;
  dot        a (N*H*W, C) x (C, K) matmul (einsum).

  python benchmarks/conv_formulations.py                       # W48 at 1x256x512
  python benchmarks/conv_formulations.py --kinds=3x3 --modes=fwd_bwd --repeats=20
"""
from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, __file__.rsplit('/', 2)[0])
from hrnet_jax.models import winograd  # pylint: disable=g-import-not-at-top,wrong-import-position

# W48 branches at a 1x256x512 input: (channels, H, W).
SHAPES_3X3 = ((48, 64, 128), (96, 32, 64), (192, 16, 32), (384, 8, 16))
# 1x1: (C_in, C_out, H, W): Bottleneck reduce/expand at 1/4, fuse layers j > i.
SHAPES_1X1 = ((256, 64, 64, 128), (64, 256, 64, 128), (96, 48, 32, 64),
              (384, 192, 8, 16), (720, 720, 64, 128))


def _xla_conv(x, w):
  pad = w.shape[0] // 2
  return jax.lax.conv_general_dilated(x, w, (1, 1), ((pad, pad), (pad, pad)),
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


@jax.custom_vjp
def _im2col_vjp_conv(x, w):
  return _xla_conv(x, w)


def _im2col_fwd(x, w):
  return _xla_conv(x, w), (x, w)


def _im2col_bwd(res, dy):
  x, w = res
  dx = _xla_conv(dy, jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2))
  h, wd = x.shape[1:3]
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  dw = jnp.stack([jnp.stack([jnp.einsum('nhwc,nhwk->ck', xp[:, i:i + h, j:j + wd], dy)
                             for j in range(3)]) for i in range(3)])
  return dx, dw


_im2col_vjp_conv.defvjp(_im2col_fwd, _im2col_bwd)


def _dot_1x1(x, w):
  return jnp.einsum('nhwc,ck->nhwk', x, w[0, 0])


FORMULATIONS = {
    '3x3': {'xla': _xla_conv,
            'winograd2': functools.partial(winograd.conv3x3, tile=2),
            'winograd4': functools.partial(winograd.conv3x3, tile=4),
            'im2col_vjp': _im2col_vjp_conv,
            'wgrad2': functools.partial(winograd.conv3x3_wgrad, tile=2),
            'wgrad4': functools.partial(winograd.conv3x3_wgrad, tile=4)},
    '1x1': {'xla': _xla_conv, 'dot': _dot_1x1},
}


def _programs(conv, mode, r):
  if mode == 'fwd':
    return jax.jit(conv)

  def loss(x, w):
    return jnp.sum(conv(x, w) * r)
  return jax.jit(jax.grad(loss, argnums=(0, 1)))


def _rel(a, b):
  a, b = (np.asarray(v, np.float64) for v in (a, b))
  return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def bench_shape(kind, cin, cout, h, w, mode, repeats, batch, names):
  rng = np.random.default_rng(0)
  k = 3 if kind == '3x3' else 1
  x = jnp.asarray(rng.standard_normal((batch, h, w, cin)).astype(np.float32))
  wt = jnp.asarray((rng.standard_normal((k, k, cin, cout)) / np.sqrt(k * k * cin))
                   .astype(np.float32))
  r = jnp.asarray(rng.standard_normal((batch, h, w, cout)).astype(np.float32))
  forms = {n: f for n, f in FORMULATIONS[kind].items() if n in names or n == 'xla'}
  if mode == 'fwd':
    for same_forward in ('im2col_vjp', 'wgrad2', 'wgrad4'):   # XLA's forward
      forms.pop(same_forward, None)
  progs = {n: _programs(f, mode, r) for n, f in forms.items()}
  outs = {n: jax.block_until_ready(p(x, wt)) for n, p in progs.items()}
  errors = {n: max(_rel(a, b) for a, b in zip(jax.tree_util.tree_leaves(outs[n]),
                                              jax.tree_util.tree_leaves(outs['xla'])))
            for n in progs}
  times = {n: [] for n in progs}
  for _ in range(repeats):
    for n, p in progs.items():
      start = time.perf_counter()
      jax.block_until_ready(p(x, wt))
      times[n].append(time.perf_counter() - start)
  med = {n: statistics.median(t) for n, t in times.items()}
  return med, errors


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--kinds', default='3x3,1x1')
  parser.add_argument('--modes', default='fwd,fwd_bwd')
  parser.add_argument('--formulations', default='winograd2,winograd4,im2col_vjp,wgrad2,wgrad4,dot')
  parser.add_argument('--repeats', type=int, default=15)
  parser.add_argument('--batch', type=int, default=1)
  args = parser.parse_args(argv)
  names = set(args.formulations.split(','))
  print(f'jax {jax.__version__} on {jax.devices()[0].device_kind}; batch {args.batch}; median '
        f'of {args.repeats} interleaved calls; ratio = XLA time / formulation time '
        '(shared machine: ratios only)')
  print('| kind | shape (C_in->C_out @ HxW) | mode | formulation | XLA ms | ms | ratio | '
        'max rel. error |')
  print('|---|---|---|---|---|---|---|---|')
  for kind in args.kinds.split(','):
    shapes = ([(c, c, h, w) for c, h, w in SHAPES_3X3] if kind == '3x3' else SHAPES_1X1)
    for cin, cout, h, w in shapes:
      for mode in args.modes.split(','):
        med, errors = bench_shape(kind, cin, cout, h, w, mode, args.repeats, args.batch,
                                  names)
        for n in med:
          if n == 'xla':
            continue
          print(f'| {kind} | {cin}->{cout} @ {h}x{w} | {mode} | {n} | {med["xla"] * 1e3:.2f} | '
                f'{med[n] * 1e3:.2f} | {med["xla"] / med[n]:.2f}x | {errors[n]:.1e} |',
                flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())

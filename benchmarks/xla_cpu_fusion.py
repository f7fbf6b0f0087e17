"""XLA:CPU loop fusion on against off for one HRNet, interleaved in one process.

Compile options are per program, so both variants of the forward and of the
forward+backward are compiled in this process and then called alternately (on, off,
on, off, ...), which puts any change in the machine's speed on both alike. Prints the
medians, the ratio on / off (> 1: fusion off is faster), the compile times and the
largest difference between the two variants' outputs and gradients. The rule that
hrnet_jax.xla_cpu applies by default is printed too.

  python benchmarks/xla_cpu_fusion.py --model=hrnet_w48 --size=256,512
  python benchmarks/xla_cpu_fusion.py --model=hrnet_w18_small_v2 --repeats=9
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

OFF = {'xla_disable_hlo_passes': 'fusion'}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--model', default='hrnet_w48')
  parser.add_argument('--size', default='256,512', help='H,W')
  parser.add_argument('--batch', type=int, default=1)
  parser.add_argument('--num_classes', type=int, default=19)
  parser.add_argument('--repeats', type=int, default=7)
  args = parser.parse_args(argv)

  import jax
  import jax.numpy as jnp
  import hrnet_jax
  from hrnet_jax import xla_cpu

  h, w = (int(v) for v in args.size.split(','))
  model = hrnet_jax.create_model(args.model, head='seg', num_classes=args.num_classes)
  x = jnp.asarray(np.random.default_rng(0).standard_normal((args.batch, h, w, 3)),
                  jnp.float32)
  variables = jax.jit(model.init)(jax.random.key(0), x)

  def forward(variables, x):
    return model.apply(variables, x, train=False)

  def forward_backward(variables, x):
    def loss(params):
      out, _ = model.apply({'params': params, 'batch_stats': variables['batch_stats']}, x,
                           train=True, mutable=['batch_stats'])
      return jnp.mean(jnp.square(out))
    return jax.grad(loss)(variables['params'])

  rows = []
  for name, fn in (('forward', forward), ('forward+backward', forward_backward)):
    compiled, compile_s = {}, {}
    for label, options in (('on', None), ('off', OFF)):
      start = time.perf_counter()
      compiled[label] = jax.jit(fn).lower(variables, x).compile(compiler_options=options)
      compile_s[label] = time.perf_counter() - start
    outs = {k: jax.block_until_ready(c(variables, x)) for k, c in compiled.items()}
    scale = max(float(jnp.max(jnp.abs(a))) for a in jax.tree.leaves(outs['on']))
    diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in
               zip(jax.tree.leaves(outs['off']), jax.tree.leaves(outs['on']))) / scale
    times = {'on': [], 'off': []}
    for _ in range(args.repeats):
      for label, c in compiled.items():
        start = time.perf_counter()
        jax.block_until_ready(c(variables, x))
        times[label].append(time.perf_counter() - start)
    on, off = statistics.median(times['on']), statistics.median(times['off'])
    rows.append((name, on, off, compile_s['on'], compile_s['off'], diff))

  print(f'{args.model} seg {args.batch}x{h}x{w}, {jax.devices()[0].platform}, interleaved, '
        f'median of {args.repeats}')
  print('| program | fusion on | fusion off | on / off | compile on | compile off | '
        'max diff / max |out| |')
  print('|---|---|---|---|---|---|---|')
  for name, on, off, c_on, c_off, diff in rows:
    print(f'| {name} | {on * 1e3:.1f} ms | {off * 1e3:.1f} ms | {on / off:.2f}x | '
          f'{c_on:.1f} s | {c_off:.1f} s | {diff:.1e} |')
  print(f'hrnet_jax.xla_cpu default for this model: '
        f'{xla_cpu.compiler_options(model) or "XLA fusion (no options)"} '
        f'(residual chain {xla_cpu.residual_chain_length(model)} blocks, '
        f'threshold {xla_cpu.LONG_CHAIN})')
  return 0


if __name__ == '__main__':
  sys.exit(main())

"""XLA:CPU loop fusion and the residual-chain cut for one HRNet, interleaved in one process.

Three variants of the forward and of the forward+backward are compiled in this process
and then called in turn (a, b, c, a, b, c, ...), which puts any change in the machine's
speed on all alike:
  * `cut`: the library default on a CPU, XLA's fusion with each residual block's output
    computed once (`hrnet_jax.models.layers.residual_output`);
  * `off`: compiled without the `fusion` pass (the default for full-size variants
    before the cut; `HRNET_JAX_XLA_CPU_FUSION=off` still selects it), with the cut;
  * `plain`: XLA's fusion without the cut (the benchmark swaps the identity in for the
    cut while tracing), which duplicates the residual chains into the weight-gradient
    copies.
Prints the medians, the ratio of each variant to `cut` (> 1: `cut` is faster), compile
times, entry-computation thunks (XLA:CPU builds a dependency graph over them whose cost
grows with their square, at compile time and again when an executable is loaded from
the persistent cache) and the largest difference from `cut`'s outputs and gradients.

  python benchmarks/xla_cpu_fusion.py --model=hrnet_w48 --size=256,512 --repeats=5
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
  from hrnet_jax.models import layers

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

  variants = {'cut': (True, None), 'off': (True, OFF), 'plain': (False, None)}
  cut = layers._computed_once  # pylint: disable=protected-access
  print(f'{args.model} seg {args.batch}x{h}x{w}, {jax.devices()[0].platform}, interleaved, '
        f'median of {args.repeats}')
  print('| program | variant | time | variant / cut | compile | entry thunks | '
        'max diff from cut / max |out| |')
  print('|---|---|---|---|---|---|---|')
  for name, fn in (('forward', forward), ('forward+backward', forward_backward)):
    compiled, compile_s, thunks = {}, {}, {}
    for label, (with_cut, options) in variants.items():
      layers._computed_once = cut if with_cut else (lambda y: y)  # pylint: disable=protected-access
      try:
        start = time.perf_counter()
        # A new function object per variant: jax caches traces by function, and the
        # variants differ only in what tracing sees.
        fresh = lambda *args, fn=fn: fn(*args)  # pylint: disable=unnecessary-lambda
        compiled[label] = jax.jit(fresh).lower(variables, x).compile(compiler_options=options)
        compile_s[label] = time.perf_counter() - start
      finally:
        layers._computed_once = cut  # pylint: disable=protected-access
      thunks[label] = _entry_thunks(compiled[label].as_text())
    outs = {k: jax.block_until_ready(c(variables, x)) for k, c in compiled.items()}
    scale = max(float(jnp.max(jnp.abs(a))) for a in jax.tree.leaves(outs['cut']))
    times = {label: [] for label in compiled}
    for _ in range(args.repeats):
      for label, c in compiled.items():
        start = time.perf_counter()
        jax.block_until_ready(c(variables, x))
        times[label].append(time.perf_counter() - start)
    base = statistics.median(times['cut'])
    for label in compiled:
      t = statistics.median(times[label])
      diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in
                 zip(jax.tree.leaves(outs[label]), jax.tree.leaves(outs['cut']))) / scale
      print(f'| {name} | {label} | {t * 1e3:.1f} ms | {t / base:.2f}x | '
            f'{compile_s[label]:.1f} s | {thunks[label]} | {diff:.1e} |', flush=True)
  print(f'hrnet_jax.xla_cpu default: '
        f'{xla_cpu.compiler_options() or "XLA fusion (no options)"}')
  return 0


def _entry_thunks(hlo_text):
  """Instructions of the entry computation that run as thunks (not views or tuples)."""
  entry = hlo_text.split('\nENTRY', 1)[1].split('\n}', 1)[0]
  free = (' parameter(', ' get-tuple-element(', ' bitcast(', ' tuple(', ' constant(')
  return sum(1 for line in entry.splitlines()[1:] if ' = ' in line and not any(
      op in line for op in free))


if __name__ == '__main__':
  sys.exit(main())

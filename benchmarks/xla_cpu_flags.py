r"""Which XLA:CPU options of this jaxlib speed HRNet up, and do they keep the numerics?

XLA_FLAGS are read once per process, so each option runs in its own subprocess;
baseline and candidate processes alternate (B, C1, B, C2, B, ... repeated --rounds
times) so that load from other programs on a shared machine hits both alike. Each
process runs the same small programs and reports the median time of --repeats calls:

  conv_fwd / conv_fwd_bwd: a W48 stage-3 sized stack (branches 48@64x128, 96@32x64,
      192@16x32 at batch 1, two 3x3 conv + ReLU each), forward, and forward + backward
      (gradients of the input and the weights);
  small_v2_fwd: hrnet_w18_small_v2 seg forward at 1x256x512.

The ratio is baseline / candidate time (> 1: the option is faster), the median over
rounds of the candidate against the mean of the baselines run just before and after
it. Every candidate's outputs are compared with the baseline's: max |a - b| / max |b|
must stay within --rtol (default 1e-4). An option this jaxlib does not know aborts
the process; it is reported as rejected.

  python benchmarks/xla_cpu_flags.py                       # every option, 2 rounds
  python benchmarks/xla_cpu_flags.py --candidates=onednn,fast_math --rounds=3
  python benchmarks/xla_cpu_flags.py --list                # the options and their flags
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

# name -> XLA_FLAGS of the candidate. Options listed by `XLA_FLAGS=--help` for jaxlib
# 0.10 (xla_cpu_*), plus the backend optimisation level (a compile-time lever).
CANDIDATES = {
    'onednn': '--xla_cpu_use_onednn=true',
    'onednn_custom_call': '--xla_cpu_experimental_onednn_custom_call=true',
    'onednn_fusion_all': ('--xla_cpu_use_onednn=true '
                          '--xla_cpu_experimental_onednn_fusion_type=dot,eltwise,reduce'),
    'onednn_fusion_dot': '--xla_cpu_experimental_onednn_fusion_type=dot',
    'xnnpack_off': '--xla_cpu_use_xnnpack=false',
    'xnn_fusion_all': '--xla_cpu_experimental_xnn_fusion_type=dot,eltwise,reduce',
    'xnn_fusion_dot': '--xla_cpu_experimental_xnn_fusion_type=dot',
    'xnn_graph_greedy': '--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY',
    'xnn_graph_slinky': ('--xla_cpu_experimental_xnn_graph_fusion_mode='
                         'XNN_GRAPH_FUSION_MODE_GREEDY_SLINKY'),
    'ynn_fusion_dot': '--xla_cpu_experimental_ynn_fusion_type=dot',
    'ynn_fusion_all': '--xla_cpu_experimental_ynn_fusion_type=dot,eltwise,reduce',
    'eigen_single_thread': '--xla_cpu_multi_thread_eigen=false',
    'fast_math': '--xla_cpu_enable_fast_math=true',
    'fusion_emitters_off': '--xla_cpu_use_fusion_emitters=false',
    'vector_width_512': '--xla_cpu_prefer_vector_width=512',
    'tiling_propagation': '--xla_cpu_experimental_enable_tiling_propagation=true',
    'opt_preset_fast_runtime': '--xla_cpu_opt_preset=CPU_OPT_PRESET_FAST_RUNTIME',
    'opt_preset_fast_compile': '--xla_cpu_opt_preset=CPU_OPT_PRESET_FAST_COMPILE',
    'backend_opt_level_1': '--xla_backend_optimization_level=1',
    'llvm_no_expensive_passes': '--xla_llvm_disable_expensive_passes=true',
}

STACK = ((48, 64, 128), (96, 32, 64), (192, 16, 32))   # (channels, H, W) of W48 stage 3
WORKLOADS = ('conv_fwd', 'conv_fwd_bwd', 'small_v2_fwd')


# ----------------------------------------------------------------------------
# Worker: one process, one XLA_FLAGS setting.
# ----------------------------------------------------------------------------
def _conv_stack_inputs(rng):
  import numpy as np  # pylint: disable=g-import-not-at-top
  xs, ws = [], []
  for c, h, w in STACK:
    xs.append(rng.standard_normal((1, h, w, c)).astype(np.float32))
    std = np.sqrt(2.0 / (9 * c))
    ws.append([(std * rng.standard_normal((3, 3, c, c))).astype(np.float32) for _ in range(2)])
  return xs, ws


def _conv_stack(xs, ws):
  import jax  # pylint: disable=g-import-not-at-top
  outs = []
  for x, (w1, w2) in zip(xs, ws):
    for w in (w1, w2):
      x = jax.nn.relu(jax.lax.conv_general_dilated(
          x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=('NHWC', 'HWIO', 'NHWC')))
    outs.append(x)
  return outs


def _small_v2(rng):
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import hrnet_jax  # pylint: disable=g-import-not-at-top
  from random_weights import random_variables  # pylint: disable=g-import-not-at-top
  model = hrnet_jax.create_model('hrnet_w18_small_v2', head='seg', num_classes=19)
  x = rng.standard_normal((1, 256, 512, 3)).astype(np.float32)
  variables = random_variables(model, rng)
  return jax.jit(lambda v, x: model.apply(v, x, train=False)), (variables, x)


def _time(fn, args, repeats):
  import jax  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  out = jax.block_until_ready(fn(*args))
  compile_s = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return out, statistics.median(times), compile_s


def worker(workloads, repeats, out_npz):
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  xs, ws = _conv_stack_inputs(rng)
  result, arrays = {}, {}
  for name in workloads:
    if name == 'conv_fwd':
      fn, args = jax.jit(_conv_stack), (xs, ws)
    elif name == 'conv_fwd_bwd':
      def loss(xs, ws):
        return sum(jnp.sum(jnp.square(o)) for o in _conv_stack(xs, ws))
      fn, args = jax.jit(jax.grad(loss, argnums=(0, 1))), (xs, ws)
    elif name == 'small_v2_fwd':
      fn, args = _small_v2(rng)
    else:
      raise ValueError(f'unknown workload {name!r}; choose from {WORKLOADS}')
    out, seconds, compile_s = _time(fn, args, repeats)
    result[name] = {'seconds': seconds, 'compile_s': compile_s}
    for i, leaf in enumerate(jax.tree_util.tree_leaves(out)):
      arrays[f'{name}/{i}'] = np.asarray(leaf)
  np.savez(out_npz, **arrays)
  print('RESULT ' + json.dumps(result))


# ----------------------------------------------------------------------------
# Driver.
# ----------------------------------------------------------------------------
def run_process(flags, workloads, repeats, out_npz):
  env = dict(os.environ, XLA_FLAGS=(os.environ.get('XLA_FLAGS', '') + ' ' + flags).strip(),
             JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2')
  env.pop('JAX_COMPILATION_CACHE_DIR', None)   # every process compiles with its flags
  cmd = [sys.executable, os.path.abspath(__file__), '--worker', f'--workloads={",".join(workloads)}',
         f'--repeats={repeats}', f'--out={out_npz}']
  proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
  for line in proc.stdout.splitlines():
    if line.startswith('RESULT '):
      return json.loads(line[len('RESULT '):]), None
  err = [l for l in (proc.stderr or '').splitlines() if l.strip()]
  key = next((l for l in err if 'Unknown flag' in l or 'rror' in l), err[-1] if err else '?')
  return None, f'exit {proc.returncode}: {key.strip()[:200]}'


def max_rel_error(base_npz, cand_npz):
  import numpy as np  # pylint: disable=g-import-not-at-top
  base, cand = np.load(base_npz), np.load(cand_npz)
  worst = {}
  for key in base.files:
    b, c = base[key].astype(np.float64), cand[key].astype(np.float64)
    err = float(np.max(np.abs(b - c)) / max(np.max(np.abs(b)), 1e-30))
    workload = key.split('/')[0]
    worst[workload] = max(worst.get(workload, 0.0), err)
  return worst


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--candidates', default=','.join(CANDIDATES),
                      help='Comma-separated names (see --list).')
  parser.add_argument('--workloads', default=','.join(WORKLOADS))
  parser.add_argument('--rounds', type=int, default=2)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--rtol', type=float, default=1e-4)
  parser.add_argument('--list', action='store_true')
  parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
  parser.add_argument('--out', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  workloads = [w for w in args.workloads.split(',') if w]
  if args.worker:
    worker(workloads, args.repeats, args.out)
    return 0
  if args.list:
    for name, flags in CANDIDATES.items():
      print(f'{name:26s} {flags}')
    return 0
  names = [n for n in args.candidates.split(',') if n]
  unknown = [n for n in names if n not in CANDIDATES]
  if unknown:
    sys.exit(f'error: --candidates: unknown {unknown}; see --list.')
  tmp = tempfile.mkdtemp(prefix='xla_cpu_flags_')
  base_times = []       # one dict per baseline process, in run order
  cand_times = {n: [] for n in names}
  errors, status = {}, {}
  base_npz = os.path.join(tmp, 'base.npz')

  def baseline():
    res, err = run_process('', workloads, args.repeats, base_npz)
    if res is None:
      sys.exit(f'error: the baseline process failed: {err}')
    base_times.append(res)
    print('  baseline: ' + ', '.join(f'{w} {res[w]["seconds"] * 1e3:.1f} ms' for w in workloads),
          flush=True)

  for r in range(args.rounds):
    print(f'round {r + 1}/{args.rounds}', flush=True)
    baseline()
    for name in names:
      if status.get(name) == 'rejected':
        continue
      cand_npz = os.path.join(tmp, f'{name}.npz')
      res, err = run_process(CANDIDATES[name], workloads, args.repeats, cand_npz)
      before = len(base_times) - 1
      baseline()
      if res is None:
        status[name] = 'rejected'
        errors[name] = err
        print(f'  {name}: {err}', flush=True)
        continue
      status[name] = 'accepted'
      worst = max_rel_error(base_npz, cand_npz)
      errors[name] = {w: max(e, errors.get(name, {}).get(w, 0.0)) for w, e in worst.items()}
      ratios = {w: 0.5 * (base_times[before][w]['seconds'] + base_times[before + 1][w]['seconds'])
                / res[w]['seconds'] for w in workloads}
      compile_ratio = {w: 0.5 * (base_times[before][w]['compile_s'] +
                                 base_times[before + 1][w]['compile_s']) / res[w]['compile_s']
                       for w in workloads}
      cand_times[name].append((ratios, compile_ratio))
      print(f'  {name}: ' + ', '.join(f'{w} x{ratios[w]:.2f}' for w in workloads) +
            f'; max rel. error {max(worst.values()):.1e}', flush=True)

  print('\nbaseline / candidate time, median over rounds (> 1: faster); max relative error '
        'vs the baseline; shared machine: ratios of interleaved processes')
  print('| option | XLA_FLAGS | ' + ' | '.join(workloads) + ' | compile (' + workloads[-1] +
        ') | max rel. error | numerics |')
  print('|---|---|' + '---|' * len(workloads) + '---|---|---|')
  for name in names:
    if status.get(name) == 'rejected':
      print(f'| {name} | `{CANDIDATES[name]}` | ' + ' | '.join('rejected' for _ in workloads) +
            f' | - | - | {errors[name]} |')
      continue
    rows = cand_times[name]
    med = {w: statistics.median(r[0][w] for r in rows) for w in workloads}
    comp = statistics.median(r[1][workloads[-1]] for r in rows)
    worst = max(errors[name].values()) if errors[name] else 0.0
    ok = 'ok' if worst <= args.rtol else f'> {args.rtol:g}'
    print(f'| {name} | `{CANDIDATES[name]}` | ' + ' | '.join(f'{med[w]:.2f}x' for w in workloads)
          + f' | {comp:.2f}x | {worst:.1e} | {ok} |')
  return 0


if __name__ == '__main__':
  sys.exit(main())

"""Forward and forward+backward time of an HRNet, hrnet-jax (jit) against PyTorch, in one run.

The PyTorch reference is timm's HRNet backbone (an implementation nobody here wrote) with
the same head written in PyTorch below; for segmentation heads timm's fusion upsampling is
switched to bilinear, as in the official segmentation code. Both sides get the same input
and the same number of CPU threads. The two sides are called alternately (one call of each
per round), so that the machine's drift hits both alike. Prints the medians, the ratio of
the medians torch / jax (> 1 means hrnet-jax is faster) with the range of the per-round
ratios (the noise), and the one-off XLA compile time.

  python benchmarks/model_vs_pytorch.py --model=hrnet_w18_small_v2 --head=seg --size=256,512
  python benchmarks/model_vs_pytorch.py --model=hrnet_w48 --head=seg --size=256,512
  HRNET_JAX_XLA_CPU_FUSION=off python benchmarks/model_vs_pytorch.py ...  # no loop fusion
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

from torch_reference import build_torch_seg, timm_name


def torch_model(name, head, num_classes):
  if head == 'cls':
    import timm
    return timm.create_model(timm_name(name), num_classes=num_classes)
  return build_torch_seg(name, num_classes)


def torch_programs(args, images_nhwc):
  """PyTorch's forward (eval mode, no grad) and forward+backward (train mode), warmed up."""
  import torch
  torch.set_num_threads(args.threads)
  model = torch_model(args.model, args.head, args.num_classes)
  x = torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2)))

  def forward():
    model.eval()
    with torch.no_grad():
      model(x)

  def forward_backward():
    model.train()
    model.zero_grad(set_to_none=True)
    (model(x) ** 2).mean().backward()

  forward()
  forward_backward()
  return forward, forward_backward


def jax_programs(args, images_nhwc):
  """The jitted forward and forward+backward, compiled; returns them and the compile time."""
  import jax
  import jax.numpy as jnp
  import hrnet_jax
  from hrnet_jax import xla_cpu

  model = hrnet_jax.create_model(args.model, head=args.head, num_classes=args.num_classes,
                                 dtype=jnp.dtype(args.dtype))
  x = jnp.asarray(images_nhwc)
  variables = jax.jit(model.init)(jax.random.key(0), x)

  @xla_cpu.jit
  def forward(variables, x):
    return model.apply(variables, x, train=False)

  @xla_cpu.jit
  def forward_backward(variables, x):
    def loss(params):
      out, _ = model.apply({'params': params, 'batch_stats': variables['batch_stats']}, x,
                           train=True, mutable=['batch_stats'])
      return jnp.mean(jnp.square(out.astype(jnp.float32)))
    return jax.grad(loss)(variables['params'])

  start = time.perf_counter()
  jax.block_until_ready(forward(variables, x))
  compile_fwd = time.perf_counter() - start
  start = time.perf_counter()
  jax.block_until_ready(forward_backward(variables, x))
  compile_bwd = time.perf_counter() - start
  return (lambda: jax.block_until_ready(forward(variables, x)),
          lambda: jax.block_until_ready(forward_backward(variables, x)),
          compile_fwd + compile_bwd, xla_cpu.compiler_options())


def interleaved_seconds(jax_fn, torch_fn, repeats):
  """Times the two programs alternately, so that the machine's drift hits both alike.

  Returns each side's per-call seconds, in call order.
  """
  jax_s, torch_s = [], []
  for _ in range(repeats):
    for fn, times in ((jax_fn, jax_s), (torch_fn, torch_s)):
      start = time.perf_counter()
      fn()
      times.append(time.perf_counter() - start)
  return jax_s, torch_s


def summarise(jax_s, torch_s):
  """Median times, the ratio of the medians, and the range of the per-round ratios."""
  rounds = [t / j for j, t in zip(jax_s, torch_s)]
  jax_median, torch_median = statistics.median(jax_s), statistics.median(torch_s)
  return jax_median, torch_median, torch_median / jax_median, min(rounds), max(rounds)


def main(argv=None):
  # As train.py and eval.py on the CPU: restart with huge pages for the large host
  # buffers (hrnet_jax.host_memory); PyTorch, in the same process, gets them too.
  from hrnet_jax import host_memory
  host_memory.reexec_with_huge_pages()
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--model', default='hrnet_w18_small_v2')
  parser.add_argument('--head', default='seg', choices=['seg', 'cls'])
  parser.add_argument('--num-classes', type=int, default=19)
  parser.add_argument('--size', default='256,512', help='H,W')
  parser.add_argument('--batch', type=int, default=1)
  parser.add_argument('--repeats', type=int, default=7)
  parser.add_argument('--threads', type=int, default=os.cpu_count())
  parser.add_argument('--dtype', default='float32')
  args = parser.parse_args(argv)
  h, w = (int(v) for v in args.size.split(','))
  images = np.random.default_rng(0).standard_normal((args.batch, h, w, 3)).astype(np.float32)

  import jax
  jax_fwd, jax_fwd_bwd, compile_s, options = jax_programs(args, images)
  torch_fwd, torch_fwd_bwd = torch_programs(args, images)
  rows = [('forward', interleaved_seconds(jax_fwd, torch_fwd, args.repeats)),
          ('forward+backward', interleaved_seconds(jax_fwd_bwd, torch_fwd_bwd, args.repeats))]
  print(f'{args.model} {args.head} {args.batch}x{h}x{w} on {jax.devices()[0].platform}, '
        f'{args.threads} threads, median of {args.repeats} calls of each, the two sides '
        'called alternately')
  print(f'{"":18s}{"hrnet-jax":>12s}{"pytorch":>12s}{"torch/jax":>11s}  per-round ratios')
  for label, (jax_s, torch_s) in rows:
    j, t, ratio, low, high = summarise(jax_s, torch_s)
    print(f'{label:18s}{j * 1e3:10.1f}ms{t * 1e3:10.1f}ms{ratio:10.2f}x  {low:.2f}x-{high:.2f}x')
  print(f'XLA compile (forward + forward/backward, once): {compile_s:.1f}s')
  print(f'XLA compile options (hrnet_jax.xla_cpu, HRNET_JAX_XLA_CPU_FUSION=auto|on|off): '
        f'{options}')
  print(f'glibc huge pages (hrnet_jax.host_memory, {host_memory.ENV_VAR}=on|off): '
        f'{host_memory.tunable_is_set()}')
  return 0


if __name__ == '__main__':
  sys.exit(main())

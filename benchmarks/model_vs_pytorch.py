"""Forward and forward+backward time of an HRNet, hrnet-jax (jit) against PyTorch, in one run.

The PyTorch reference is timm's HRNet backbone (an implementation nobody here wrote) with
the same head written in PyTorch below; for segmentation heads timm's fusion upsampling is
switched to bilinear, as in the official segmentation code. Both sides get the same input
and the same number of CPU threads. Prints medians and the ratio torch / jax (> 1 means
hrnet-jax is faster), plus the one-off XLA compile time.

  python benchmarks/model_vs_pytorch.py --model=hrnet_w18_small_v2 --head=seg --size=256,512
  python benchmarks/model_vs_pytorch.py --model=hrnet_w48 --head=seg --size=256,512
  HRNET_JAX_XLA_CPU_FUSION=off python benchmarks/model_vs_pytorch.py ...  # no loop fusion
"""
import argparse
import os
import sys
import time

import numpy as np

from torch_reference import build_torch_seg, median_seconds, timm_name



def torch_model(name, head, num_classes):
  if head == 'cls':
    import timm
    return timm.create_model(timm_name(name), num_classes=num_classes)
  return build_torch_seg(name, num_classes)


def bench_torch(args, images_nhwc):
  import torch
  torch.set_num_threads(args.threads)
  model = torch_model(args.model, args.head, args.num_classes)
  x = torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2)))

  def forward():
    with torch.no_grad():
      model(x)

  def forward_backward():
    model.zero_grad(set_to_none=True)
    (model(x) ** 2).mean().backward()

  model.eval()
  forward()
  fwd = median_seconds(forward, args.repeats)
  model.train()
  forward_backward()
  fwd_bwd = median_seconds(forward_backward, args.repeats)
  return fwd, fwd_bwd


def bench_jax(args, images_nhwc):
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
  fwd = median_seconds(lambda: jax.block_until_ready(forward(variables, x)), args.repeats)
  fwd_bwd = median_seconds(lambda: jax.block_until_ready(forward_backward(variables, x)),
                   args.repeats)
  return fwd, fwd_bwd, compile_fwd + compile_bwd, xla_cpu.compiler_options()


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
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--threads', type=int, default=os.cpu_count())
  parser.add_argument('--dtype', default='float32')
  args = parser.parse_args(argv)
  h, w = (int(v) for v in args.size.split(','))
  images = np.random.default_rng(0).standard_normal((args.batch, h, w, 3)).astype(np.float32)

  import jax
  jax_fwd, jax_fwd_bwd, compile_s, options = bench_jax(args, images)
  torch_fwd, torch_fwd_bwd = bench_torch(args, images)
  print(f'{args.model} {args.head} {args.batch}x{h}x{w} on {jax.devices()[0].platform}, '
        f'{args.threads} threads, median of {args.repeats}')
  print(f'{"":18s}{"hrnet-jax":>12s}{"pytorch":>12s}{"torch/jax":>11s}')
  for label, j, t in [('forward', jax_fwd, torch_fwd),
                      ('forward+backward', jax_fwd_bwd, torch_fwd_bwd)]:
    print(f'{label:18s}{j * 1e3:10.1f}ms{t * 1e3:10.1f}ms{t / j:10.2f}x')
  print(f'XLA compile (forward + forward/backward, once): {compile_s:.1f}s')
  print(f'XLA compile options (hrnet_jax.xla_cpu, HRNET_JAX_XLA_CPU_FUSION=auto|on|off): '
        f'{options}')
  print(f'glibc huge pages (hrnet_jax.host_memory, {host_memory.ENV_VAR}=on|off): '
        f'{host_memory.tunable_is_set()}')
  return 0


if __name__ == '__main__':
  sys.exit(main())

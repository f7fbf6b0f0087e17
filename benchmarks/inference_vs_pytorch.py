"""Segmentation inference time per image: hrnet-jax's test protocol against PyTorch.

Both sides run the official Cityscapes protocol on the same random image, with the same
number of CPU threads (one by default) or each on the GPU it finds:
  * whole: logits -> bilinear upsample to the input -> exp -> argmax (the single-scale
    numbers, e.g. W48 81.1 mIoU at 1024x2048);
  * msflip: scales 0.5 .. 1.75 with flip; scales <= 1 whole-image, > 1 sliding windows
    of the input size, shifted to end at the border (`Cityscapes.multi_scale_inference`).
The PyTorch side is timm's HRNet backbone (fusion upsampling switched to bilinear, as
in the segmentation code) plus the `pytorch-v1.1` seg head written below, driven by a
literal rewrite of the official loop (cv2 resize of the normalised image, F.interpolate).
Prints median seconds per image, the ratio torch / jax (> 1: hrnet-jax faster) and the
one-off XLA compile time.

  python benchmarks/inference_vs_pytorch.py --model=hrnet_w48 --size=1024,2048
  python benchmarks/inference_vs_pytorch.py --model=hrnet_w48 --size=256,512 --protocols=whole,msflip
"""
import argparse
import os
import sys
import time

import numpy as np

from torch_reference import build_torch_seg, median_seconds

MS_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


# ----------------------------------------------------------------------------
# PyTorch: timm backbone + the official head, official test loop.
# ----------------------------------------------------------------------------
def build_torch(model_name, num_classes, device):
  return build_torch_seg(model_name, num_classes).eval().to(device)


def torch_protocol(net, image_uint8, *, scales, flip, device):
  """`Cityscapes.multi_scale_inference` + argmax for one image (crop = the image size)."""
  import cv2
  import torch
  import torch.nn.functional as F

  def inference(x):
    size = x.shape[-2:]
    pred = F.interpolate(net(x), size=size, mode='bilinear', align_corners=False)
    if flip:
      flipped = F.interpolate(net(torch.flip(x, [3])), size=size, mode='bilinear',
                              align_corners=False)
      pred = (pred + torch.flip(flipped, [3])) * 0.5
    return pred.exp()

  image = (image_uint8.astype(np.float32) / 255.0 - MEAN) / STD
  ori_h, ori_w = image.shape[:2]
  crop_h, crop_w = ori_h, ori_w
  final = None
  with torch.no_grad():
    for scale in scales:
      long_size = int(ori_w * scale + 0.5)
      new_h, new_w = int(ori_h * long_size / ori_w + 0.5), long_size
      img = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
      x = torch.from_numpy(img.transpose(2, 0, 1)[None].copy()).to(device)
      if scale <= 1.0:
        preds = inference(x)
      else:
        rows = int(np.ceil((new_h - crop_h) / crop_h)) + 1
        cols = int(np.ceil((new_w - crop_w) / crop_w)) + 1
        preds = torch.zeros((1, net.last_layer[-1].out_channels, new_h, new_w), device=device)
        count = torch.zeros((1, 1, new_h, new_w), device=device)
        for r in range(rows):
          for c in range(cols):
            h1, w1 = min(r * crop_h + crop_h, new_h), min(c * crop_w + crop_w, new_w)
            h0, w0 = max(h1 - crop_h, 0), max(w1 - crop_w, 0)
            preds[:, :, h0:h1, w0:w1] += inference(x[:, :, h0:h1, w0:w1])
            count[:, :, h0:h1, w0:w1] += 1
        preds = preds / count
      preds = F.interpolate(preds, (ori_h, ori_w), mode='bilinear', align_corners=False)
      final = preds if final is None else final + preds
    labels = final.argmax(1)
    if device != 'cpu':
      torch.cuda.synchronize()
  return labels


# ----------------------------------------------------------------------------
# JAX.
# ----------------------------------------------------------------------------
def build_jax(model_name, num_classes):
  import jax
  import hrnet_jax
  from random_weights import random_variables

  model = hrnet_jax.create_model(model_name, head='seg', num_classes=num_classes)
  variables = random_variables(model, np.random.default_rng(0), kernel_std=0.01)
  return model, jax.device_put(variables)


def jax_protocol_fn(model, *, scales, flip, size):
  import jax
  import jax.numpy as jnp
  from hrnet_jax import xla_cpu
  from hrnet_jax.evaluation import inference

  protocol = inference.Protocol(scales=tuple(scales), flip=flip, mode='sliding',
                                crop_size=size, stride_rate=1.0, window_layout='border',
                                base_size=size[1], align_corners=False)
  logits_fn = inference.seg_logits_fn(model)
  return xla_cpu.jit(lambda v, x: jnp.argmax(
      inference.predict_probs(logits_fn, v, x, protocol), -1))


def main():
  from hrnet_jax import host_memory   # as eval.py on the CPU (torch, in this process, too)
  host_memory.reexec_with_huge_pages()
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--model', default='hrnet_w48')
  parser.add_argument('--size', default='1024,2048', help='H,W of the test image.')
  parser.add_argument('--protocols', default='whole,msflip')
  parser.add_argument('--num_classes', type=int, default=19)
  parser.add_argument('--repeats', type=int, default=3)
  # One thread by default: on a shared machine torch's OpenMP threads spin and slow
  # down by 50x under load; 0 = every core for both.
  parser.add_argument('--threads', type=int, default=1)
  parser.add_argument('--skip_torch', action='store_true')
  args = parser.parse_args()
  size = tuple(int(v) for v in args.size.split(','))
  if args.threads == 1:   # must be set before jax is imported
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' --xla_cpu_multi_thread_eigen'
                               '=false intra_op_parallelism_threads=1').strip()
  args.threads = args.threads or os.cpu_count()
  import jax
  import torch
  torch.set_num_threads(args.threads)
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  image = np.random.default_rng(0).integers(0, 256, size + (3,), dtype=np.uint8)

  model, variables = build_jax(args.model, args.num_classes)
  net = None if args.skip_torch else build_torch(args.model, args.num_classes, device)
  print(f'{args.model} seg, image {size[0]}x{size[1]}, jax on {jax.devices()[0].platform} '
        f'({jax.device_count()} devices), torch {torch.__version__} on {device}, '
        f'{args.threads} threads, median of {args.repeats}, glibc huge pages '
        f'({host_memory.ENV_VAR}): {host_memory.tunable_is_set()}')
  print(f'{"protocol":<8} {"jax s/img":>10} {"torch s/img":>12} {"torch/jax":>10} '
        f'{"jax compile s":>14}')
  for name in args.protocols.split(','):
    scales, flip = ((1.0,), False) if name == 'whole' else (MS_SCALES, True)
    fn = jax_protocol_fn(model, scales=scales, flip=flip, size=size)
    x = jax.device_put(image[None])
    start = time.perf_counter()
    fn(variables, x).block_until_ready()
    compile_s = time.perf_counter() - start
    jax_s = median_seconds(lambda: fn(variables, x).block_until_ready(), args.repeats)
    if net is None:
      print(f'{name:<8} {jax_s:10.3f} {"-":>12} {"-":>10} {compile_s:14.1f}')
      continue
    torch_protocol(net, image, scales=(1.0,), flip=False, device=device)   # warm-up
    torch_s = median_seconds(
        lambda: torch_protocol(net, image, scales=scales, flip=flip, device=device),
        args.repeats)
    print(f'{name:<8} {jax_s:10.3f} {torch_s:12.3f} {torch_s / jax_s:10.2f} {compile_s:14.1f}')
    sys.stdout.flush()


if __name__ == '__main__':
  main()

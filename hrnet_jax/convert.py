"""Official PyTorch HRNet checkpoints -> Flax model directories, and back.

    python -m hrnet_jax.convert --src hrnet_w48_cityscapes_cls19_1024x2048_trainset.pth \
        --out /ckpt/w48_cityscapes
    python -m hrnet_jax.convert --to-torch --src /ckpt/w48_cityscapes --out w48.pth

Model, head, class count and the numerics of the source code base (fusion upsampling,
align_corners, BN momentum) are detected from the file; flags override them. The
library entry point is `from_torch(path_or_state_dict, **overrides) -> (model,
variables)`. Details: docs/convert.md.
"""
import argparse
import os
import sys
from typing import List, Optional

from hrnet_jax.conversion import (FAMILIES, Conversion, ConversionError, convert,
                                  export_torch, from_torch, torch_state_dict)
from hrnet_jax.models import HEADS, VARIANTS

__all__ = ['ConversionError', 'Conversion', 'convert', 'from_torch', 'torch_state_dict',
           'export_torch', 'main']


def _bool(text: str) -> bool:
  value = text.strip().lower()
  if value in ('1', 'true', 'yes'):
    return True
  if value in ('0', 'false', 'no'):
    return False
  raise argparse.ArgumentTypeError(f'expected true or false, got {text!r}')


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog='python -m hrnet_jax.convert',
      description='Convert an official HRNet PyTorch checkpoint into a Flax model directory '
                  '(or, with --to-torch, a Flax model back into an official .pth).')
  p.add_argument('--src', required=True,
                 help='.pth / .pth.tar / .safetensors file (or, with --to-torch, a model '
                      'directory or training workdir)')
  p.add_argument('--out', required=True,
                 help='new model directory (or, with --to-torch, the .pth file to write)')
  p.add_argument('--to-torch', action='store_true',
                 help='write an official-layout state_dict from a Flax checkpoint')
  p.add_argument('--which', choices=('latest', 'best'), default='latest',
                 help='with --to-torch on a training workdir: which checkpoint')
  p.add_argument('--model', choices=sorted(VARIANTS), help='override the detected variant')
  p.add_argument('--head', choices=HEADS, help='override the detected head')
  p.add_argument('--num-classes', type=int, help='override the detected class count')
  p.add_argument('--family', choices=sorted(FAMILIES),
                 help='override the detected source code base (sets the next three)')
  p.add_argument('--upsample', choices=('nearest', 'bilinear'))
  p.add_argument('--align-corners', type=_bool, metavar='{true,false}')
  p.add_argument('--bn-momentum', type=float, help='PyTorch convention')
  p.add_argument('--unsafe-pickle', action='store_true',
                 help='allow pickled Python objects besides tensors (trusted files only)')
  p.add_argument('--overwrite', action='store_true',
                 help='with --to-torch: replace an existing --out file')
  p.add_argument('--debug', action='store_true',
                 help='show full tracebacks (or set HRNET_DEBUG=1)')
  return p


def _summary(result: Conversion, out: str) -> List[str]:
  meta, o = result.metadata, result.metadata['options']
  classes = f', {meta["num_classes"]} classes' if meta['num_classes'] is not None else ''
  lines = [
      f'{meta["model"]}, head {meta["head"]}{classes}; family {meta["family"]} '
      f'({FAMILIES[meta["family"]][0]}): upsample {o["upsample"]}, align_corners '
      f'{o["align_corners"]}, BN momentum {o["bn_momentum"]}; key layout '
      f'{meta["torch_layout"]}',
      f'{result.num_tensors} tensors converted; ignored on purpose: '
      + (', '.join(f'{len(keys)} {reason}' for reason, keys in result.ignored.items())
         or 'nothing')]
  if result.dropped:
    lines.append(f'container entries not converted: {", ".join(result.dropped)}')
  lines.append(f'wrote {out}')
  return lines


def main(argv: Optional[List[str]] = None) -> int:
  args = _parser().parse_args(argv)
  # Imported here so that --help and argument errors do not wait for Orbax.
  from hrnet_jax import checkpointing  # pylint: disable=g-import-not-at-top
  from hrnet_jax import cli  # pylint: disable=g-import-not-at-top
  if args.debug:
    os.environ[cli.DEBUG_ENV] = '1'
  if args.to_torch and os.path.exists(args.out) and not args.overwrite:
    print(f'error: {args.out} exists; pass --overwrite to replace it, or choose another '
          '--out.', file=sys.stderr)
    return 2
  try:
    if args.to_torch:
      meta, count = export_torch(args.src, args.out, which=args.which)
      print(f'{meta["model"]}, head {meta["head"]}: {count} tensors written to {args.out} '
            f'(layout {meta.get("torch_layout") or "default of the head"})')
      return 0
    result = convert(args.src, model=args.model, head=args.head, num_classes=args.num_classes,
                     family=args.family, upsample=args.upsample,
                     align_corners=args.align_corners, bn_momentum=args.bn_momentum,
                     unsafe_pickle=args.unsafe_pickle)
    checkpointing.save_model(args.out, result.variables, result.metadata)
  except (ConversionError, checkpointing.CheckpointError, OSError) as e:
    if cli.debug_enabled():
      raise
    print(f'error: {cli.describe(e)}', file=sys.stderr)
    return 2
  print('\n'.join(_summary(result, args.out)))
  return 0


if __name__ == '__main__':
  _code = main()
  if _code:   # leave at once: no Orbax/TensorStore shutdown noise after the error line
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_code)  # pylint: disable=protected-access
  sys.exit(0)

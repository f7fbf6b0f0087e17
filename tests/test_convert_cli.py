"""The command line, the Flax -> torch -> Flax round trip, and the one-line errors."""
import subprocess
import sys

import jax
import numpy as np
import pytest
import timm
import torch

import hrnet_jax
from hrnet_jax import checkpointing, convert
from hrnet_jax.conversion import core, keymap

from model_helpers import random_variables

VARIANT = 'hrnet_w18_small_v1'
HEADS = {'cls': 1000, 'seg': 19, 'ocr': 19, 'pose': 17, 'pyramid': None, 'features': None}


def _flat(tree):
  return jax.tree_util.tree_flatten_with_path(tree)[0]


def _assert_bit_exact(a, b):
  fa, fb = _flat(a), _flat(b)
  assert [p for p, _ in fa] == [p for p, _ in fb]
  for (path, x), (_, y) in zip(fa, fb):
    x, y = np.asarray(x), np.asarray(y)
    assert x.dtype == y.dtype and np.array_equal(x, y), jax.tree_util.keystr(path)


def _random_torch_state(head, seed=0):
  """An official-layout state_dict (numpy) of a random model, and that model's metadata."""
  model = hrnet_jax.create_model(VARIANT, head=head, num_classes=HEADS[head])
  variables = random_variables(model, (1, 64, 64, 3), seed=seed)
  meta = dict(model=VARIANT, head=head, num_classes=HEADS[head])
  return convert.torch_state_dict(variables, meta), variables


@pytest.fixture(scope='module')
def seg_file(tmp_path_factory):
  """A segmentation trainer's checkpoint.pth.tar (model. prefix, loss weights)."""
  state, variables = _random_torch_state('seg')
  state['loss.criterion.weight'] = np.linspace(0.8, 1.2, 19, dtype=np.float32)
  path = tmp_path_factory.mktemp('seg') / 'checkpoint.pth.tar'
  torch.save({'epoch': 3, 'best_mIoU': 0.5,
              'state_dict': {k: torch.from_numpy(v) for k, v in state.items()}}, path)
  return str(path), state, variables


@pytest.mark.parametrize('head', sorted(HEADS))
def test_round_trip_flax_torch_flax_is_bit_exact_for_every_head(head):
  state, variables = _random_torch_state(head, seed=len(head))
  layout = keymap.LAYOUTS[keymap.DEFAULT_LAYOUT[head]]
  assert all(k.startswith(layout.outer) for k in state)
  result = convert.convert(state)   # a state_dict of numpy arrays: everything detected
  assert (result.metadata['model'], result.metadata['head']) == (VARIANT, head)
  assert result.metadata['num_classes'] == HEADS[head]
  assert result.num_tensors == sum(not k.endswith('num_batches_tracked') for k in state)
  _assert_bit_exact(result.variables, variables)
  assert convert.torch_state_dict(result.variables, result.metadata).keys() == state.keys()


def test_cli_writes_a_model_directory_and_exports_it_back(seg_file, tmp_path, capsys):
  path, state, variables = seg_file
  out = tmp_path / 'converted'
  assert convert.main(['--src', path, '--out', str(out)]) == 0
  printed = capsys.readouterr().out
  assert 'hrnet_w18_small_v1, head seg, 19 classes; family seg-v1.1' in printed
  assert "1 the segmentation trainer's loss buffers" in printed
  assert 'container entries not converted: epoch, best_mIoU' in printed

  loaded, meta = checkpointing.load_model(str(out))
  assert (meta['model'], meta['head'], meta['num_classes']) == (VARIANT, 'seg', 19)
  assert meta['options']['bn_momentum'] == 0.01 and 'checkpoint.pth.tar' in meta['source']
  model = hrnet_jax.create_model(meta['model'], head=meta['head'],
                                 num_classes=meta['num_classes'], **meta['options'])
  assert model.opts.upsample == 'bilinear' and model.opts.align_corners is False
  _assert_bit_exact(loaded, variables)

  pth = tmp_path / 'back.pth'
  assert convert.main(['--to-torch', '--src', str(out), '--out', str(pth)]) == 0
  back = torch.load(pth, weights_only=True)
  assert set(back) == set(state) - {'loss.criterion.weight'}
  for key, value in back.items():
    assert np.array_equal(value.numpy(), state[key]), key
  _assert_bit_exact(convert.convert(str(pth)).variables, variables)

  # An existing model directory is not overwritten.
  assert convert.main(['--src', path, '--out', str(out)]) == 2
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and 'already holds a model' in err


def _write(path, data: bytes):
  path.write_bytes(data)
  return str(path)


def _error_cases(tmp, seg_path):
  """(argv, substrings of the one-line message) for every kind of bad input."""
  cls_state, _ = _random_torch_state('cls')
  torch.save({k: torch.from_numpy(v) for k, v in cls_state.items()}, tmp / 'cls.pth')
  torch.save(timm.create_model('resnet18').state_dict(), tmp / 'resnet18.pth')
  whole = (tmp / 'cls.pth').read_bytes()
  torch.save({'a': torch.zeros(3)}, tmp / 'legacy.pth', _use_new_zipfile_serialization=False)
  legacy = (tmp / 'legacy.pth').read_bytes()
  torch.save({'state_dict': {'w': torch.zeros(2)}, 'stats': np.arange(3)}, tmp / 'obj.pth')
  out = ['--out', str(tmp / 'never')]
  return {
      'other width': (['--src', str(tmp / 'cls.pth'), '--model', 'hrnet_w18_small_v2'] + out,
                      ['layer1.0.conv1.weight file (32, 64, 1, 1) vs model (64, 64, 1, 1)',
                       'missing layer1.1.']),
      'other class count': (['--src', seg_path, '--num-classes', '20'] + out,
                            ['model.last_layer.3.weight file (19, 240, 1, 1) vs model '
                             '(20, 240, 1, 1)']),
      'other family': (['--src', seg_path, '--head', 'ocr'] + out,
                       ['missing model.aux_head.0.weight (240, 240, 1, 1)',
                        'unused model.last_layer.0.weight (240, 240, 1, 1)']),
      'not an HRNet': (['--src', str(tmp / 'resnet18.pth')] + out,
                       ['not an HRNet checkpoint', 'transition1.0.0.weight']),
      'truncated zip': (['--src', _write(tmp / 'half.pth', whole[:len(whole) // 2])] + out,
                        ['truncated or corrupt', 'download it again']),
      'truncated legacy': (['--src', _write(tmp / 'half_legacy.pth',
                                            legacy[:len(legacy) // 2])] + out,
                           ['truncated checkpoint']),
      'not a checkpoint': (['--src', _write(tmp / 'photo.pth', b'\x89PNG\r\n\x1a\n' * 9)] + out,
                           ['not a PyTorch checkpoint']),
      'empty file': (['--src', _write(tmp / 'empty.pth', b'')] + out, ['the file is empty']),
      'missing file': (['--src', str(tmp / 'nowhere.pth')] + out, ['no such file']),
      'python objects': (['--src', str(tmp / 'obj.pth')] + out, ['--unsafe-pickle']),
  }


def test_bad_inputs_give_one_line_errors_and_exit_status_2(seg_file, tmp_path, capsys):
  for name, (argv, needles) in _error_cases(tmp_path, seg_file[0]).items():
    assert convert.main(argv) == 2, name
    captured = capsys.readouterr()
    assert captured.out == '', name
    assert captured.err.startswith('error: ') and captured.err.count('\n') == 1, \
        f'{name}: {captured.err!r}'
    for needle in needles:
      assert needle in captured.err, f'{name}: {needle!r} not in {captured.err!r}'
  assert not (tmp_path / 'never').exists()


def test_trusted_pickles_load_with_unsafe_pickle(tmp_path):
  state, variables = _random_torch_state('pose')
  torch.save({'state_dict': {k: torch.from_numpy(v) for k, v in state.items()},
              'train_stats': np.arange(3)}, tmp_path / 'pose.pth')
  with pytest.raises(convert.ConversionError, match='--unsafe-pickle'):
    convert.from_torch(str(tmp_path / 'pose.pth'))
  _, loaded = convert.from_torch(str(tmp_path / 'pose.pth'), unsafe_pickle=True)
  _assert_bit_exact(loaded, variables)


def test_safetensors_files_convert_without_torch(tmp_path, monkeypatch):
  safetensors_numpy = pytest.importorskip('safetensors.numpy')
  state, variables = _random_torch_state('cls', seed=3)
  path = tmp_path / 'model.safetensors'
  safetensors_numpy.save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, path)
  monkeypatch.setitem(sys.modules, 'torch', None)
  _, loaded = convert.from_torch(str(path))
  _assert_bit_exact(loaded, variables)


def test_without_torch_the_message_says_how_to_install_it(seg_file, tmp_path, monkeypatch,
                                                           capsys):
  path, state, variables = seg_file
  monkeypatch.setitem(sys.modules, 'torch', None)   # `import torch` now raises ImportError
  expected = 'PyTorch is needed to read .pth files: pip install torch==2.14.1'
  with pytest.raises(convert.ConversionError) as info:
    convert.from_torch(path)
  assert str(info.value) == expected
  assert convert.main(['--src', path, '--out', str(tmp_path / 'x')]) == 2
  assert capsys.readouterr().err == f'error: {expected}\n'
  # A state_dict already in memory needs no torch.
  _, loaded = convert.from_torch({k: v for k, v in state.items()
                                  if not k.startswith('loss.')})
  _assert_bit_exact(loaded, variables)


def test_command_line_process_prints_no_traceback(tmp_path):
  bad = _write(tmp_path / 'hrnetv2_w48_imagenet_pretrained.pth', b'PK\x03\x04' + b'\0' * 64)
  proc = subprocess.run([sys.executable, '-m', 'hrnet_jax.convert', '--src', bad, '--out',
                         str(tmp_path / 'out')], capture_output=True, text=True, timeout=300,
                        check=False)
  assert proc.returncode == 2
  assert proc.stderr.count('\n') == 1 and 'Traceback' not in proc.stderr
  assert 'truncated or corrupt' in proc.stderr


def test_overrides_pick_family_numerics(seg_file):
  path = seg_file[0]
  result = convert.convert(path, family='ocr', bn_momentum=0.05)
  o = result.metadata['options']
  assert (o['upsample'], o['align_corners'], o['bn_momentum']) == ('bilinear', True, 0.05)
  with pytest.raises(convert.ConversionError, match="unknown family 'caffe'"):
    convert.convert(path, family='caffe')
  assert core.IGNORE_LOSS in result.ignored


def test_export_refuses_variables_that_do_not_fit_the_metadata(tmp_path, capsys):
  state, variables = _random_torch_state('seg')
  meta = dict(model=VARIANT, head='seg', num_classes=19)
  partial = {'params': variables['params']}   # no batch_stats
  stats, total = len(jax.tree.leaves(variables['batch_stats'])), len(jax.tree.leaves(variables))
  with pytest.raises(convert.ConversionError,
                     match=f'lack {stats} of the {total} variables.*first backbone/bn1/mean'):
    convert.torch_state_dict(partial, meta)
  with pytest.raises(convert.ConversionError, match=r'head/classifier/kernel has shape '
                     r'\(1, 1, 240, 19\), the model \(1, 1, 240, 20\)'):
    convert.torch_state_dict(variables, dict(meta, num_classes=20))
  with pytest.raises(convert.ConversionError, match='does not belong to the model'):
    convert.torch_state_dict(variables, dict(meta, head='ocr'))
  assert convert.main(['--to-torch', '--src', str(tmp_path / 'none'), '--out',
                       str(tmp_path / 'x.pth')]) == 2
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and 'no such checkpoint directory' in err

"""eval.py on a fake Cityscapes val set (full-size zips through the real TFDS builder).

The slowest evaluation test (two 1024x2048 forward passes of the smallest HRNet on CPU,
plus building the dataset): it is the only one that proves the submission files carry
Cityscapes labelIds under the names the benchmark matches.
"""
import json

import numpy as np
import pytest
from PIL import Image

from hrnet_jax.data import fakes
from hrnet_jax.data import registry

import eval_testlib as lib


@pytest.mark.slow
def test_fake_cityscapes_end_to_end(tmp_path):
  manual = tmp_path / 'manual'
  examples = fakes.write_fake_cityscapes(str(manual), images_per_split={'train': 1, 'val': 2,
                                                                        'test': 1})
  model, variables = lib.save_checkpoint(tmp_path / 'ckpt')
  config = tmp_path / 'cityscapes.py'
  config.write_text(
      'from configs import default\n\n'
      'def get_config():\n'
      '  c = default.get_config()\n'
      f"  c.model.name = {lib.MODEL!r}\n"
      f"  c.data.data_dir = {str(tmp_path / 'tfds')!r}\n"
      f"  c.data.manual_dir = {str(manual)!r}\n"
      '  c.data.num_workers = 0\n'
      '  c.eval.global_batch_size = 2\n'
      '  c.eval.num_pictures = 2\n'
      '  return c\n')
  out, sub = tmp_path / 'out', tmp_path / 'submission'
  res = lib.run_cli(['eval.py', f'--config={config}', f'--checkpoint={tmp_path / "ckpt"}',
                     f'--workdir={out}', f'--submission_dir={sub}'], timeout=600)
  assert res.returncode == 0, res.stderr[-3000:]
  results = json.loads((out / 'eval_results.json').read_text())
  assert results['num_examples'] == 2 and len(results['per_class_iou']) == 19
  assert sorted(p.name for p in (out / 'eval_pictures').glob('*_overlay.png')) == [
      '000_overlay.png', '001_overlay.png']

  val = sorted(k for k, v in examples.items() if v['split'] == 'val')
  images = np.stack([examples[k]['image'] for k in val])
  expected_train_ids = lib.reference_labels(model, variables, images)
  lut = registry.get_dataset_info('cityscapes').label_to_train_id
  written = sorted(p.relative_to(sub).as_posix() for p in sub.rglob('*.png'))
  assert written == [f'frankfurt/{k}_leftImg8bit.png' for k in val]
  for k, train_ids in zip(val, expected_train_ids):
    label_ids = np.asarray(Image.open(sub / 'frankfurt' / f'{k}_leftImg8bit.png'))
    assert label_ids.shape == (1024, 2048)
    # labelIds of trained classes only (7 road ... 33 bicycle), mapping back to the prediction.
    assert set(np.unique(label_ids)) <= set(registry.CITYSCAPES_LABEL_TO_TRAIN_ID)
    np.testing.assert_array_equal(lut[label_ids], train_ids)

"""python -m hrnet_jax.predict on images of odd sizes, against a plain reference."""
import numpy as np
import pytest
from PIL import Image

from hrnet_jax.data import palettes

import eval_testlib as lib


@pytest.fixture(scope='module')
def ckpt(tmp_path_factory):
  root = tmp_path_factory.mktemp('predict')
  model, variables = lib.save_checkpoint(root / 'ckpt', dataset='cityscapes')
  return root, model, variables


@pytest.mark.slow
def test_predict_cli_any_size(ckpt, tmp_path):
  root, model, variables = ckpt
  rng = np.random.default_rng(0)
  images = {'wide.png': rng.integers(0, 256, (45, 97, 3), dtype=np.uint8),
            'tall.jpg': rng.integers(0, 256, (77, 50, 3), dtype=np.uint8)}
  for name, image in images.items():
    Image.fromarray(image).save(tmp_path / name, quality=100)
  out = tmp_path / 'out'
  res = lib.run_cli(['-m', 'hrnet_jax.predict', f'--checkpoint={root / "ckpt"}',
                     str(tmp_path / 'wide.png'), str(tmp_path / 'tall.jpg'), f'--out={out}'])
  assert res.returncode == 0, res.stderr[-3000:]
  for name in images:
    stem = name.split('.')[0]
    image = np.asarray(Image.open(tmp_path / name).convert('RGB'))   # as decoded (JPEG)
    labels = np.asarray(Image.open(out / f'{stem}_labels.png'))
    np.testing.assert_array_equal(labels, lib.reference_labels(model, variables, image))
    colours = np.asarray(Image.open(out / f'{stem}_pred.png'))
    np.testing.assert_array_equal(colours, palettes.CITYSCAPES[labels])
    assert np.asarray(Image.open(out / f'{stem}_overlay.png')).shape == image.shape


def test_predict_cli_missing_image_is_one_line(ckpt, tmp_path):
  root, _, _ = ckpt
  res = lib.run_cli(['-m', 'hrnet_jax.predict', f'--checkpoint={root / "ckpt"}',
                     str(tmp_path / 'missing.png'), f'--out={tmp_path}'])
  assert res.returncode != 0 and 'Traceback' not in res.stderr
  assert 'missing.png: no such image file' in res.stderr.strip().splitlines()[-1]

"""jax.export round trip: the serialized function, loaded in a fresh process without
hrnet_jax, reproduces model.apply exactly."""
import textwrap

import jax
import numpy as np
import pytest

from hrnet_jax import export
from hrnet_jax.evaluation import inference

import eval_testlib as lib

_LOADER = textwrap.dedent('''
    import sys
    import jax
    import numpy as np
    exported = jax.export.deserialize(bytearray(open(sys.argv[1], 'rb').read()))
    images = np.load(sys.argv[2])
    outs = {}
    for b in (1, 3):   # the batch size is symbolic
      out = exported.call(images[:b])
      outs[f'logits{b}'] = np.asarray(out['logits'])
      outs[f'labels{b}'] = np.asarray(out['labels'])
    assert not any(m.startswith('hrnet_jax') for m in sys.modules), 'loaded the model code'
    np.savez(sys.argv[3], **outs)
''')


@pytest.mark.slow
def test_export_round_trip_in_a_new_process(tmp_path):
  model, variables = lib.save_checkpoint(tmp_path / 'ckpt')
  res = lib.run_cli(['-m', 'hrnet_jax.export', f'--checkpoint={tmp_path / "ckpt"}',
                     f'--out={tmp_path / "model.jaxexport"}', '--height=64', '--width=96'])
  assert res.returncode == 0, res.stderr[-3000:]
  images = np.random.default_rng(1).integers(0, 256, (3, 64, 96, 3), dtype=np.uint8)
  np.save(tmp_path / 'images.npy', images)
  (tmp_path / 'load.py').write_text(_LOADER)
  res = lib.run_cli([str(tmp_path / 'load.py'), str(tmp_path / 'model.jaxexport'),
                     str(tmp_path / 'images.npy'), str(tmp_path / 'out.npz')], cwd=tmp_path)
  assert res.returncode == 0, res.stderr[-3000:]
  out = np.load(tmp_path / 'out.npz')
  apply = jax.jit(lambda x: model.apply(variables, inference.normalize(x), train=False))
  # Bit for bit, for each batch size (XLA may pick other kernels for another batch size).
  np.testing.assert_array_equal(out['logits3'], np.asarray(apply(images)))
  np.testing.assert_array_equal(out['logits1'], np.asarray(apply(images[:1])))
  np.testing.assert_array_equal(out['labels3'], lib.reference_labels(model, variables, images))


def test_export_rejects_tiny_inputs():
  model = lib.hrnet_jax.create_model(lib.MODEL, head='seg', num_classes=19)
  try:
    export.export_model(model, {}, height=16, width=96)
  except ValueError as e:
    assert '32x32' in str(e)
  else:
    raise AssertionError('expected a ValueError')

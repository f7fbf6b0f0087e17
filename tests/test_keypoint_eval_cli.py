"""eval.py on a converted official-format pose checkpoint (random weights) and a small fake
COCO val: the keypoint json it writes equals a literal torch rewrite of the official
validate() + flip test on the same boxes, and the AP it reports is COCOeval's on that
file."""
import functools
import json
import os

import numpy as np
import pytest
import torch

from hrnet_jax.data import keypoint_fakes
from hrnet_jax.data import registry
from hrnet_jax.data import sources
from hrnet_jax.tasks import keypoint_coco as kc
from hrnet_jax.tasks import keypoints as kp_task

import convert_testlib as lib
import eval_testlib
import test_keypoint_metrics as ref_metrics
import test_keypoint_transforms as ref_t

VARIANT = 'hrnet_w18_small_v1'
CONFIG = '''
from configs import coco_pose_w32_256x192

def get_config():
  c = coco_pose_w32_256x192.get_config()
  c.model.name = {variant!r}
  c.data.data_dir = {data_dir!r}
  c.data.manual_dir = {manual!r}
  c.data.num_workers = 0
  c.keypoints.image_size = (64, 96)
  c.keypoints.heatmap_size = (16, 24)
  c.keypoints.use_gt_boxes = {gt}
  c.eval.global_batch_size = 4
  c.eval.num_pictures = 2
  return c
'''


@pytest.mark.slow
@pytest.mark.parametrize('use_gt_boxes', [False])
def test_eval_cli_json_equals_official_validate(tmp_path, use_gt_boxes):
  manual, data_dir = str(tmp_path / 'manual'), str(tmp_path / 'tfds')
  fake = keypoint_fakes.write_fake_coco_keypoints(manual, height=120, width=160,
                                                  images_per_split={'train': 2, 'val': 3})
  with lib.torch_threads(1):
    torch.manual_seed(7)
    net = lib.backbone(VARIANT, single_output=True)
    lib.add_pose_head(net, 17)
    forward = functools.partial(lib.pose_forward, net)
    calib = torch.randn(2, 3, 96, 64, generator=torch.Generator().manual_seed(8))
    lib.randomize(net, forward, calib, seed=8)
    torch.save(net.state_dict(), tmp_path / 'pose_hrnet.pth')
  run = eval_testlib.run_cli(['-m', 'hrnet_jax.convert', '--src',
                              str(tmp_path / 'pose_hrnet.pth'), '--out', str(tmp_path / 'ckpt')])
  assert run.returncode == 0, run.stderr[-2000:]
  config_path = tmp_path / 'pose_config.py'
  config_path.write_text(CONFIG.format(variant=VARIANT, data_dir=data_dir, manual=manual,
                                       gt=use_gt_boxes))
  run = eval_testlib.run_cli(['eval.py', f'--config={config_path}',
                              f'--checkpoint={tmp_path / "ckpt"}',
                              f'--workdir={tmp_path / "out"}'], timeout=900)
  assert run.returncode == 0, run.stderr[-3000:]
  assert 'AP ' in run.stdout and 'AP50' in run.stdout
  written_path = tmp_path / 'out' / 'keypoints_validation_results.json'
  written = json.loads(written_path.read_text())
  # The reference: the same person crops through the torch model, official decoding.
  from configs import coco_pose_w32_256x192  # pylint: disable=g-import-not-at-top
  config = coco_pose_w32_256x192.get_config()
  config.data.data_dir, config.data.manual_dir = data_dir, manual
  config.keypoints.image_size, config.keypoints.heatmap_size = (64, 96), (16, 24)
  config.keypoints.use_gt_boxes = use_gt_boxes
  info = registry.get_dataset_info('coco_keypoints')
  view = kp_task.TASK.source_view(sources.open_split(info, 'validation', data_dir=data_dir),
                                  info, 'validation', config, training=False)
  transform = kp_task.TASK.eval_transform(config, info, None)
  items = [transform(view[i], str(i)) for i in range(len(view))]
  x = np.stack([it['image'] for it in items]).astype(np.float32) / 255
  x = (x - np.array([.485, .456, .406])) / np.array([.229, .224, .225])
  x = torch.from_numpy(x.astype(np.float32).transpose(0, 3, 1, 2))
  with lib.torch_threads(1), torch.no_grad():
    output = forward(x).numpy()
    flipped = ref_t.ref_flip_back(forward(x.flip(3)).numpy(), ref_t.COCO_PAIRS)
  flipped[:, :, :, 1:] = flipped.copy()[:, :, :, 0:-1]
  output = (output + flipped) * 0.5
  c = np.stack([it['center'] for it in items])
  s = np.stack([it['scale'] for it in items])
  preds, maxvals = ref_t.ref_get_final_preds(output, c, s)
  boxes = np.c_[c, s, np.prod(s * 200, 1), [it['score'] for it in items]]
  ref = ref_metrics.ref_evaluate(list(np.concatenate([preds, maxvals], -1)), boxes,
                                 [int(it['image_id']) for it in items])
  assert len(written) == len(ref) > 0
  written = sorted(written, key=lambda r: (r['image_id'], -r['score']))
  ref = sorted(ref, key=lambda r: (r[0], -r[1]))
  for w, (image_id, score, kps) in zip(written, ref):
    assert w['image_id'] == image_id
    assert w['score'] == pytest.approx(score, rel=1e-4, abs=1e-6)
    np.testing.assert_allclose(w['keypoints'], kps, rtol=1e-4, atol=1e-3)
  # The AP in eval_results.json is COCOeval's on the written file, run by hand.
  results = json.loads((tmp_path / 'out' / 'eval_results.json').read_text())
  by_hand = kc.evaluate_results(fake['val']['json'], str(written_path))
  assert {k: results[k] for k in kc.STAT_NAMES} == by_hand   # (random weights: AP 0; the
  # non-trivial AP equality is test_keypoint_metrics.test_ap_equals_cocoeval_by_hand)
  assert os.path.exists(tmp_path / 'out' / 'pictures')

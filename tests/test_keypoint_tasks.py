"""The keypoints and landmarks tasks: person view, transforms, losses against the official
torch losses, and the pose evaluator against a literal torch rewrite of the official
validate() (flip test, get_final_preds, rescoring, OKS-NMS) on the same person crops,
with a converted official-format checkpoint (random weights)."""
import functools
import json

import jax
import numpy as np
import pytest
import torch
from torch import nn

from configs import coco_pose_w32_256x192
from configs import wflw_w18
from hrnet_jax import convert
from hrnet_jax.data import keypoint_fakes
from hrnet_jax.data import registry
from hrnet_jax.data import sources
from hrnet_jax.tasks import keypoint_coco as kc
from hrnet_jax.tasks import keypoints as kp_task
from hrnet_jax.tasks import landmarks as lm_task
from hrnet_jax.training import sharding

import convert_testlib as lib
import test_keypoint_metrics as ref_metrics
import test_keypoint_transforms as ref_t

VARIANT = 'hrnet_w18_small_v1'


@pytest.fixture(scope='module')
def built(tmp_path_factory):
  root = tmp_path_factory.mktemp('kp_tasks')
  manual = str(root / 'manual')
  fake = keypoint_fakes.write_fake_coco_keypoints(manual, height=120, width=160,
                                                  images_per_split={'train': 3, 'val': 4})
  keypoint_fakes.write_fake_faces(manual, 'wflw')
  sources.build_datasets(['coco_keypoints', 'wflw'], data_dir=str(root / 'tfds'),
                         manual_dir=manual)
  return root, fake


def _pose_config(root, use_gt_boxes=True):
  config = coco_pose_w32_256x192.get_config()
  config.data.data_dir = str(root / 'tfds')
  config.data.manual_dir = str(root / 'manual')
  # Sizes divisible by 32: the pose code's nearest fusion needs them.
  config.keypoints.image_size = (64, 96)
  config.keypoints.heatmap_size = (16, 24)
  config.keypoints.use_gt_boxes = use_gt_boxes
  config.eval.global_batch_size = 8
  return config


def _view(root, config, split, training):
  info = registry.get_dataset_info(config.data.name)
  source = sources.open_split(info, split, data_dir=config.data.data_dir,
                              manual_dir=config.data.manual_dir)
  return info, kp_task.TASK.source_view(source, info, split, config, training=training)


@pytest.mark.slow
def test_person_view_and_transforms(built):
  root, fake = built
  config = _pose_config(root)
  info, view = _view(root, config, 'train', training=True)
  anns = [a for a in fake['train']['json']['annotations']
          if not a['iscrowd'] and max(a['keypoints']) > 0]
  assert len(view) == len(anns)
  transform = kp_task.TASK.train_transform(config, info)
  out = transform(view[0], np.random.default_rng(0), 'person 0')
  assert out['image'].shape == (96, 64, 3) and out['image'].dtype == np.uint8
  assert out['target'].shape == (24, 16, 17) and out['target_weight'].shape == (17,)
  assert set(np.unique(out['target_weight'])) <= {0.0, 1.0}
  # Evaluation: one entry per detector box when use_gt_boxes is False.
  config = _pose_config(root, use_gt_boxes=False)
  info, view = _view(root, config, 'validation', training=False)
  dets = [d for d in fake['val']['detections'] if d['category_id'] == 1]
  assert len(view) == len(dets)
  ev = kp_task.TASK.eval_transform(config, info, None)
  sample = ev(view[0], 'box 0')
  assert set(sample) == set(ev.padding())
  for k, v in ev.padding().items():
    assert np.shape(sample[k]) == np.shape(v), k


def test_joints_mse_loss_equals_official():
  rng = np.random.default_rng(0)
  out = rng.standard_normal((3, 17, 8, 6)).astype(np.float32)
  target = rng.standard_normal((3, 17, 8, 6)).astype(np.float32)
  weight = rng.integers(0, 2, (3, 17, 1)).astype(np.float32)
  criterion = nn.MSELoss(reduction='mean')
  ref = 0
  pred = torch.from_numpy(out).reshape(3, 17, -1).split(1, 1)
  gt = torch.from_numpy(target).reshape(3, 17, -1).split(1, 1)
  w = torch.from_numpy(weight)
  for j in range(17):
    ref += 0.5 * criterion(pred[j].squeeze().mul(w[:, j]), gt[j].squeeze().mul(w[:, j]))
  ref = float(ref / 17)
  ours = kp_task.joints_mse_loss(out.transpose(0, 2, 3, 1), target.transpose(0, 2, 3, 1),
                                 weight[..., 0])
  assert float(ours) == pytest.approx(ref, rel=1e-6)
  ours = lm_task.landmark_mse_loss(out.transpose(0, 2, 3, 1), target.transpose(0, 2, 3, 1))
  assert float(ours) == pytest.approx(float(nn.MSELoss()(torch.from_numpy(out),
                                                         torch.from_numpy(target))), rel=1e-6)


def _batches(transform, view, size):
  items = [transform(view[i], f'{i}') for i in range(len(view))]
  for start in range(0, len(items), size):
    chunk = items[start:start + size]
    pad = [transform.padding()] * (size - len(chunk))
    batch = {k: np.stack([c[k] for c in chunk + pad]) for k in chunk[0]}
    batch['mask'] = np.array([True] * len(chunk) + [False] * len(pad))
    yield batch


@pytest.mark.slow
@pytest.mark.parametrize('use_gt_boxes', [True, False])
def test_pose_evaluator_equals_official_validate(built, tmp_path, use_gt_boxes):
  root, fake = built
  config = _pose_config(root, use_gt_boxes)
  with lib.torch_threads(1):
    torch.manual_seed(3)
    net = lib.backbone(VARIANT, single_output=True)
    lib.add_pose_head(net, 17)
    forward = functools.partial(lib.pose_forward, net)
    calib = torch.randn(2, 3, 96, 64, generator=torch.Generator().manual_seed(4))
    lib.randomize(net, forward, calib, seed=4)
    path = tmp_path / 'pose_hrnet_w18s.pth'
    torch.save(net.state_dict(), path)
    result = convert.convert(str(path))
    info, view = _view(root, config, 'validation', training=False)
    transform = kp_task.TASK.eval_transform(config, info, None)
    mesh = sharding.make_mesh()
    evaluator = kp_task.TASK.make_evaluator(result.model, result.variables, config=config,
                                            mesh=mesh)
    ref_preds, ref_boxes, ref_ids = [], [], []
    for batch in _batches(transform, view, 8):
      evaluator.update(batch)
      keep = batch['mask']
      x = (batch['image'][keep].astype(np.float32) / 255 - np.array([.485, .456, .406])) / \
          np.array([.229, .224, .225])
      x = torch.from_numpy(x.astype(np.float32).transpose(0, 3, 1, 2))
      with torch.no_grad():
        output = forward(x).numpy()
        flipped = ref_t.ref_flip_back(forward(x.flip(3)).numpy(), ref_t.COCO_PAIRS)
      flipped[:, :, :, 1:] = flipped.copy()[:, :, :, 0:-1]
      output = (output + flipped) * 0.5
      c, s = batch['center'][keep], batch['scale'][keep]
      preds, maxvals = ref_t.ref_get_final_preds(output, c, s)
      ref_preds.extend(np.concatenate([preds, maxvals], -1))
      ref_boxes.extend(np.c_[c, s, np.prod(s * 200, 1), batch['score'][keep]])
      ref_ids.extend(batch['image_id'][keep].tolist())
    ours = evaluator.result()
  with open(ours['results_file']) as f:
    written = json.load(f)
  ref = ref_metrics.ref_evaluate(ref_preds, np.array(ref_boxes), ref_ids)
  assert len(written) == len(ref) > 0
  written = sorted(written, key=lambda r: (r['image_id'], -r['score']))
  ref = sorted(ref, key=lambda r: (r[0], -r[1]))
  for w, (image_id, score, kps) in zip(written, ref):
    assert w['image_id'] == image_id
    assert w['score'] == pytest.approx(score, rel=1e-4, abs=1e-6)
    np.testing.assert_allclose(w['keypoints'], kps, rtol=1e-4, atol=1e-3)
  # The AP reported is COCOeval's on that file.
  by_hand = kc.evaluate_results(fake['val']['json'], ours['results_file'])
  assert {k: ours[k] for k in kc.STAT_NAMES} == by_hand


def test_landmarks_task_transforms(built):
  root, _ = built
  config = wflw_w18.get_config()
  config.data.data_dir = str(root / 'tfds')
  config.data.manual_dir = str(root / 'manual')
  info = registry.get_dataset_info('wflw')
  source = sources.open_split(info, 'validation', data_dir=config.data.data_dir,
                              manual_dir=config.data.manual_dir)
  ev = lm_task.TASK.eval_transform(config, info, source)
  sample = ev(source[0], 'face 0')
  assert sample['image'].shape == (256, 256, 3)
  assert sample['landmarks'].shape == (98, 2)
  assert sample['scale'] == pytest.approx(float(source[0]['scale']) * 1.25)
  train = lm_task.TASK.train_transform(config, info)(source[0], np.random.default_rng(1), 'f')
  assert train['target'].shape == (64, 64, 98) and train['target'].max() == pytest.approx(1.0)

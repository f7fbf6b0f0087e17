"""Skeletons / landmarks on whole images (hrnet_jax.tasks.keypoint_predict)."""
import json

import numpy as np
import pytest
from PIL import Image

import hrnet_jax
from hrnet_jax.data import keypoint_transforms as kt
from hrnet_jax.data import stick_figures
from hrnet_jax.tasks import keypoint_decode as kd
from hrnet_jax.tasks import keypoint_eval
from hrnet_jax.tasks import keypoint_predict as kpp

import eval_testlib


@pytest.mark.slow
def test_pose_boxes_and_whole_image(tmp_path):
  model = hrnet_jax.create_model('hrnet_w18_small_v1', head='pose', num_classes=17)
  variables = eval_testlib.random_variables(model, seed=1, num_classes=17)
  rng = np.random.default_rng(0)
  image, people = stick_figures.render_people(rng, 120, 160)
  Image.fromarray(image).save(tmp_path / 'a.png')
  Image.fromarray(image[:, :96]).save(tmp_path / 'b.png')
  boxes = {'a.png': [p.box.tolist() for p in people]}
  (tmp_path / 'boxes.json').write_text(json.dumps(boxes))
  written = kpp.predict_files(model, variables, 'pose', [str(tmp_path / 'a.png'),
                                                         str(tmp_path / 'b.png')],
                              str(tmp_path / 'out'), boxes_file=str(tmp_path / 'boxes.json'),
                              image_size=(64, 96))
  assert [p.split('/')[-1] for p in written] == ['a_skeleton.png', 'b_skeleton.png']
  out = json.loads((tmp_path / 'out' / 'a_keypoints.json').read_text())
  assert np.shape(out['keypoints']) == (len(people), 17, 3)
  assert np.shape(json.loads((tmp_path / 'out' / 'b_keypoints.json').read_text())[
      'keypoints']) == (1, 17, 3)                     # the whole image as one box
  # The same numbers as the evaluation path on the same crop.
  c, s = kt.box_to_center_scale(boxes['a.png'][0], 64 / 96)
  crop = kt.warp(image, kt.get_affine_transform(c, s, 0, (64, 96)), (64, 96))
  step = keypoint_eval.make_heatmap_step(model, kt.COCO_FLIP_PAIRS, True, True)
  coords, maxvals = kd.pose_predictions(np.asarray(step(variables, crop[None])), c[None],
                                        s[None])
  np.testing.assert_allclose(out['keypoints'][0], np.concatenate([coords, maxvals], -1)[0],
                             rtol=1e-5, atol=1e-4)
  assert np.asarray(Image.open(written[0])).shape == image.shape


@pytest.mark.slow
def test_landmarks_on_a_face_box(tmp_path):
  model = hrnet_jax.create_model('hrnet_w18_small_v1', head='landmark', num_classes=19)
  variables = eval_testlib.random_variables(model, seed=2, num_classes=19)
  image = np.random.default_rng(1).integers(0, 256, (90, 110, 3), dtype=np.uint8)
  kps = kpp.predict_landmarks(model, variables, image, [[20, 10, 60, 70]], image_size=64)
  assert kps.shape == (1, 19, 2)
  assert np.all(kps == np.round(kps))          # official decoding: whole pixels
  drawn = kpp.draw(image, kps)
  assert drawn.shape == image.shape and (drawn != image).any()


@pytest.mark.slow
def test_predict_cli_draws_skeletons(tmp_path):
  """python -m hrnet_jax.predict with a pose checkpoint: one skeleton picture per image."""
  from hrnet_jax import checkpointing
  model = hrnet_jax.create_model('hrnet_w18_small_v1', head='pose', num_classes=17)
  variables = eval_testlib.random_variables(model, seed=3, num_classes=17)
  checkpointing.save_model(str(tmp_path / 'ckpt'), variables,
                           dict(model='hrnet_w18_small_v1', head='pose', num_classes=17,
                                options={}, source='random weights for tests'))
  image, people = stick_figures.render_people(np.random.default_rng(5), 120, 160)
  Image.fromarray(image).save(tmp_path / 'people.png')
  (tmp_path / 'boxes.json').write_text(json.dumps(
      {'people.png': [p.box.tolist() for p in people]}))
  run = eval_testlib.run_cli(['-m', 'hrnet_jax.predict', f'--checkpoint={tmp_path / "ckpt"}',
                              f'--out={tmp_path / "out"}', f'--boxes={tmp_path / "boxes.json"}',
                              '--input_size=64,96', str(tmp_path / 'people.png')])
  assert run.returncode == 0, run.stderr[-2000:]
  assert (tmp_path / 'out' / 'people_skeleton.png').exists()
  kps = json.loads((tmp_path / 'out' / 'people_keypoints.json').read_text())['keypoints']
  assert np.shape(kps) == (len(people), 17, 3)

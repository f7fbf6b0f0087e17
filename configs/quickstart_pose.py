"""Quickstart (pose): a small HRNet on the built-in stick-figure people, on a CPU.

Needs no download: `hrnet_synthetic_pose` (1,200 train / 150 validation images of
192x256 with 1-3 articulated figures, the 17 COCO joints, occluders) is rendered on
first use. Trains HRNet-W18-Small-v1 on 128x96 person crops and reports COCO keypoint
AP (pycocotools COCOeval on the validation people, ground-truth boxes, flip test); the
workdir holds checkpoints, TensorBoard logs and skeleton pictures
(`pictures/step_*.png`; eval.py writes `pictures/skeletons_*.png`: ground truth
red, prediction green).

Run:
  python train.py --config=configs/quickstart_pose.py --workdir=/tmp/qp

Tuned for a short CPU run, not a paper recipe: random init, Adam lr 3e-3 with one drop
at step 1000, sigma 2 on 32x24 heatmaps, milder augmentation (rotation 30, scale 0.25,
no half body). Measured on an idle 2-core CPU: AP 0.524 (AP50 0.892, AR 0.556) after
1,200 steps, 5 min 41 s in all (~3.8 steps/s); see docs/keypoints.md.
"""
from configs import keypoints_common


def get_config():
  config = keypoints_common.pose_config(width=32, image_size=(96, 128), heatmap_size=(24, 32),
                                        sigma=2.0, batch=16, persons=2_400)
  config.model.name = 'hrnet_w18_small_v1'
  config.data.name = 'hrnet_synthetic_pose'
  config.data.num_workers = 1
  config.num_train_steps = 1200
  config.optimizer.learning_rate = 3e-3
  # Milder augmentation than COCO's: a short run learns the figures first.
  config.keypoints.rotation_factor = 30.0
  config.keypoints.scale_factor = 0.25
  config.keypoints.half_body_prob = 0.0
  config.optimizer.step_boundaries = (1000,)
  config.eval.every_steps = 0             # evaluate once, after the last step
  config.eval.global_batch_size = 32
  config.checkpoint.every_steps = 500
  config.log_every_steps = 50
  return config

"""HRNet-W32 pose on COCO keypoints, 256x192 (w32_256x192_adam_lr1e-3.yaml).

Published (README of deep-high-resolution-net.pytorch, COCO val2017, flip test, person
detector AP 56.4): AP 0.744, AP50 0.905, AP75 0.819, APM 0.708, APL 0.810, AR 0.798.

Recipe: ImageNet-initialised HRNet-W32 (convert hrnet_w32-36af842e.pth with
`python -m hrnet_jax.convert --head features` and set init_checkpoint), Adam lr 1e-3
without weight decay, x0.1 at epochs 170 and 200, 210 epochs of the 149,813 training
people, batch 128 (32 per GPU x 4), heatmaps 64x48 with sigma 2.

Run (train, validating on ground-truth boxes every epoch):
  python train.py --config=configs/coco_pose_w32_256x192.py --workdir=/ckpt/coco_w32 \
      --config.data.manual_dir=~/downloads/coco \
      --config.init_checkpoint=/ckpt/hrnet_w32_imagenet
Evaluate as published (the person detections of the official repository, put
COCO_val2017_detections_AP_H_56_person.json in the manual dir before the first build):
  python eval.py --config=configs/coco_pose_w32_256x192.py --workdir=/ckpt/coco_w32 \
      --config.keypoints.use_gt_boxes=False
Official weights: python -m hrnet_jax.convert --src pose_hrnet_w32_256x192.pth --out /ckpt/w32
"""
from configs import keypoints_common


def get_config():
  return keypoints_common.pose_config(width=32, image_size=(192, 256), heatmap_size=(48, 64),
                                      sigma=2.0, batch=128, persons=149_813)

"""HRNet-W48 pose on COCO keypoints, 384x288 (w48_384x288_adam_lr1e-3.yaml).

Published (COCO val2017, flip test, detector AP 56.4): AP 0.763, AP50 0.908, AP75 0.829,
APM 0.723, APL 0.834, AR 0.812; test-dev 0.755.

Recipe: ImageNet-initialised HRNet-W48 (hrnet_w48-8ef0771d.pth), Adam lr 1e-3, x0.1 at
epochs 170 and 200, 210 epochs, batch 96 (24 per GPU x 4), heatmaps 96x72 with sigma 3.

Run:
  python train.py --config=configs/coco_pose_w48_384x288.py --workdir=/ckpt/coco_w48 \
      --config.data.manual_dir=~/downloads/coco --config.init_checkpoint=/ckpt/hrnet_w48_imagenet
  python eval.py --config=configs/coco_pose_w48_384x288.py --workdir=/ckpt/coco_w48 \
      --config.keypoints.use_gt_boxes=False
"""
from configs import keypoints_common


def get_config():
  return keypoints_common.pose_config(width=48, image_size=(288, 384), heatmap_size=(72, 96),
                                      sigma=3.0, batch=96, persons=149_813)

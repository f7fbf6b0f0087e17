"""HRNet-W32 pose on MPII, 256x256 (mpii/w32_256x256_adam_lr1e-3.yaml).

Published (README, MPII val, flip test, PCKh@0.5): Head 97.1, Shoulder 95.9, Elbow 90.3,
Wrist 86.4, Hip 89.1, Knee 87.1, Ankle 83.3, Mean 90.3, Mean@0.1 37.7 (the official
"Mean@0.1" is taken at threshold 0.11; so is ours).

Recipe: as COCO but scale factor 0.25, rotation 30 (clipped at +-60), no half body,
64x64 heatmaps with sigma 2, 210 epochs of the 22,246 training people, batch 128.

Run:
  python train.py --config=configs/mpii_pose_w32_256x256.py --workdir=/ckpt/mpii_w32 \
      --config.data.manual_dir=~/downloads/mpii --config.init_checkpoint=/ckpt/hrnet_w32_imagenet
"""
from configs import keypoints_common


def get_config():
  config = keypoints_common.pose_config(width=32, image_size=(256, 256),
                                        heatmap_size=(64, 64), sigma=2.0, batch=128,
                                        persons=22_246)
  config.model.num_classes = 16
  config.data.name = 'mpii_pose'
  config.keypoints.scale_factor = 0.25
  config.keypoints.rotation_factor = 30.0
  config.keypoints.half_body_prob = 0.0
  return config

"""HRNetV2-W18 facial landmarks on aflw (HRNet-Facial-Landmark-Detection).

Published (README, NME % with the dataset's normalisation): AFLW full (test) 1.57, frontal
1.46.

Recipe: ImageNet-initialised HRNetV2-W18 (hrnetv2_w18_imagenet_pretrained.pth), 256x256
crops, 64x64 heatmaps with sigma 1.5, Adam lr 2e-4 without weight decay, x0.1 at
epochs 30 and 50, 60 epochs of the 20000 training faces, batch 16; the best
checkpoint has the lowest NME.

Run:
  python train.py --config=configs/aflw_w18.py --workdir=/ckpt/aflw_w18 \
      --config.data.manual_dir=~/downloads/aflw --config.init_checkpoint=/ckpt/hrnetv2_w18
Official weights: python -m hrnet_jax.convert --src HR18-<SET>.pth --out /ckpt/aflw_w18
"""
from configs import keypoints_common


def get_config():
  return keypoints_common.landmark_config(data_name='aflw', num_landmarks=19,
                                          sigma=1.5, train_faces=20000, lr=2e-4)

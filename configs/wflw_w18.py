"""HRNetV2-W18 facial landmarks on wflw (HRNet-Facial-Landmark-Detection).

Published (README, NME % with the dataset's normalisation): WFLW test 4.60 (pose 7.86,
expression 4.78, illumination 4.57, make-up 4.26, occlusion 5.42, blur 5.36).

Recipe: ImageNet-initialised HRNetV2-W18 (hrnetv2_w18_imagenet_pretrained.pth), 256x256
crops, 64x64 heatmaps with sigma 1.5, Adam lr 1e-4 without weight decay, x0.1 at
epochs 30 and 50, 60 epochs of the 7500 training faces, batch 16; the best
checkpoint has the lowest NME.

Run:
  python train.py --config=configs/wflw_w18.py --workdir=/ckpt/wflw_w18 \
      --config.data.manual_dir=~/downloads/wflw --config.init_checkpoint=/ckpt/hrnetv2_w18
Official weights: python -m hrnet_jax.convert --src HR18-<SET>.pth --out /ckpt/wflw_w18
"""
from configs import keypoints_common


def get_config():
  return keypoints_common.landmark_config(data_name='wflw', num_landmarks=98,
                                          sigma=1.5, train_faces=7500, lr=1e-4)

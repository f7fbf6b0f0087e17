"""HRNetV2-W18 facial landmarks on cofw (HRNet-Facial-Landmark-Detection).

Published (README, NME % with the dataset's normalisation): COFW test 3.45, FR@0.1 0.20%.

Recipe: ImageNet-initialised HRNetV2-W18 (hrnetv2_w18_imagenet_pretrained.pth), 256x256
crops, 64x64 heatmaps with sigma 1.5, Adam lr 1e-4 without weight decay, x0.1 at
epochs 30 and 50, 60 epochs of the 1345 training faces, batch 16; the best
checkpoint has the lowest NME.

Run:
  python train.py --config=configs/cofw_w18.py --workdir=/ckpt/cofw_w18 \
      --config.data.manual_dir=~/downloads/cofw --config.init_checkpoint=/ckpt/hrnetv2_w18
Official weights: python -m hrnet_jax.convert --src HR18-<SET>.pth --out /ckpt/cofw_w18
"""
from configs import keypoints_common


def get_config():
  return keypoints_common.landmark_config(data_name='cofw', num_landmarks=29,
                                          sigma=1.5, train_faces=1345, lr=1e-4)

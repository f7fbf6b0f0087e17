"""HRNetV2-W18 facial landmarks on 300W (HRNet-Facial-Landmark-Detection).

The dataset is registered as `face300w` (registry names are identifiers).

Published (README, NME % with the dataset's normalisation): 300W full (valid) 3.34, common
2.91, challenging 5.11, test 3.85.

Recipe: ImageNet-initialised HRNetV2-W18 (hrnetv2_w18_imagenet_pretrained.pth), 256x256
crops, 64x64 heatmaps with sigma 1.0, Adam lr 1e-4 without weight decay, x0.1 at
epochs 30 and 50, 60 epochs of the 3148 training faces, batch 16; the best
checkpoint has the lowest NME.

Run:
  python train.py --config=configs/300w_w18.py --workdir=/ckpt/300w_w18 \
      --config.data.manual_dir=~/downloads/face300w --config.init_checkpoint=/ckpt/hrnetv2_w18
Official weights: python -m hrnet_jax.convert --src HR18-<SET>.pth --out /ckpt/300w_w18
"""
from configs import keypoints_common


def get_config():
  return keypoints_common.landmark_config(data_name='face300w', num_landmarks=68,
                                          sigma=1.0, train_faces=3148, lr=1e-4)

"""HRNetV2-W48 on Cityscapes: the official `pytorch-v1.1` recipe, exactly.

4 GPUs x 3 = batch 12, crop 512x1024, SGD momentum 0.9, lr 0.01 with poly(0.9) per
iteration, weight decay 5e-4 coupled as torch SGD, 119,548 iterations (484 epochs of
2975 images), Cityscapes class weights, SyncBN (BN momentum 0.01), loss per group of 3
images as per GPU, initialised from the ImageNet HRNetV2-W48 (81.1 mIoU published).

Convert the ImageNet weights once, then train:
  python -m hrnet_jax.convert --src hrnetv2_w48_imagenet_pretrained.pth \\
      --out checkpoints/hrnetv2_w48_imagenet
  python train.py --config=configs/cityscapes_w48.py --workdir=/tmp/cityscapes_w48 \\
      --config.data.manual_dir=/path/to/cityscapes_zips
"""
from configs import default


def get_config():
  config = default.get_config()   # the defaults are this recipe
  config.model.name = 'hrnet_w48'
  config.init_checkpoint = 'checkpoints/hrnetv2_w48_imagenet'
  return config

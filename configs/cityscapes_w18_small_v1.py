"""HRNetV2-W18-Small-v1 on Cityscapes (official yaml, 70.3 mIoU published).

The `cityscapes_w48` recipe (batch 12, 512x1024, lr 0.01 poly, wd 5e-4, 484 epochs)
with the small model, initialised from `hrnet_w18_small_model_v1.pth` (ImageNet).

Run:
  python -m hrnet_jax.convert --src hrnet_w18_small_model_v1.pth \\
      --out checkpoints/hrnet_w18_small_v1_imagenet
  python train.py --config=configs/cityscapes_w18_small_v1.py \\
      --workdir=/tmp/cityscapes_w18_small_v1 --config.data.manual_dir=/path/to/cityscapes_zips
"""
from configs import default


def get_config():
  config = default.get_config()
  config.model.name = 'hrnet_w18_small_v1'
  config.init_checkpoint = 'checkpoints/hrnet_w18_small_v1_imagenet'
  return config

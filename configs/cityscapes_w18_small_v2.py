"""HRNetV2-W18-Small-v2 on Cityscapes (official yaml, 76.2 mIoU published).

The `cityscapes_w48` recipe with the small-v2 model, initialised from
`hrnet_w18_small_model_v2.pth` (ImageNet).

Run:
  python -m hrnet_jax.convert --src hrnet_w18_small_model_v2.pth \\
      --out checkpoints/hrnet_w18_small_v2_imagenet
  python train.py --config=configs/cityscapes_w18_small_v2.py \\
      --workdir=/tmp/cityscapes_w18_small_v2 --config.data.manual_dir=/path/to/cityscapes_zips
"""
from configs import default


def get_config():
  config = default.get_config()
  config.model.name = 'hrnet_w18_small_v2'
  config.init_checkpoint = 'checkpoints/hrnet_w18_small_v2_imagenet'
  return config

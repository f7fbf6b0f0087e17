"""HRNetV2-W48 on Cityscapes with OHEM (the official `*_train_ohem_*` yaml).

The `cityscapes_w48` recipe with online hard example mining: per group of 3 images (one
GPU of the official run), pixels whose true-class probability is below
max(sorted_p[131072], 0.9) are kept, loss = their plain mean weighted CE.

Run:
  python train.py --config=configs/cityscapes_w48_ohem.py --workdir=/tmp/cityscapes_w48_ohem \\
      --config.data.manual_dir=/path/to/cityscapes_zips
"""
from configs import cityscapes_w48


def get_config():
  config = cityscapes_w48.get_config()
  config.loss.ohem = True
  config.loss.ohem_thresh = 0.9
  config.loss.ohem_min_kept = 131072
  return config

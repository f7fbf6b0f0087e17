"""Segmentation on your own folder of images and masks (data.name=folder), on a CPU.

HRNet-W18-Small-v1 from random initialisation, the quickstart recipe: 128x128 crops at
scale 1, lr 0.1, BN momentum 0.1, OHEM. The folder (images/ and masks/, optional
train/ val/ test/ or train.lst/val.lst, and a classes.txt) is checked and built into the
TFDS data_dir on first use; docs/custom_data.md walks through it with the 60-scene
example folder below (figures measured there).

Run:
  python -m hrnet_jax.data.folder_fakes --out=/tmp/streets      # the example folder
  python train.py --config=configs/folder_seg.py --workdir=/tmp/streets_run \
      --config.data.root=/tmp/streets

Your own folder: --config.data.root=DIR --config.model.num_classes=<lines of the class
file>, and --config.data.eval_pad_size='(H,W)' (at least the largest image) when the images
differ in size.
"""
from configs import quickstart


def get_config():
  config = quickstart.get_config()
  config.task = 'segmentation'
  config.data.name = 'folder'
  config.model.num_classes = 19
  config.data.base_size = 512      # long side at scale 1: the example's 256x512 images
  config.num_train_steps = 500
  config.checkpoint.every_steps = 250
  return config

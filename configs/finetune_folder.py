"""Fine-tune an official HRNet segmentation model on your own folder (data.name=folder).

Starts from a converted official checkpoint, e.g. HRNetV2-W48 trained on Cityscapes
(19 classes). Every backbone variable whose path and shape match is loaded; the
classifier of another class count keeps its fresh initialisation, and the init report
in the log names each such variable. A shorter, gentler poly schedule than training
from scratch (lr 0.001), 512x512 crops; meant for an accelerator.

Run:
  python -m hrnet_jax.convert --src hrnet_w48_cityscapes_cls19_1024x2048_trainset.pth \
      --out /ckpt/w48_cityscapes
  python train.py --config=configs/finetune_folder.py --workdir=/runs/my_finetune \
      --config.init_checkpoint=/ckpt/w48_cityscapes \
      --config.data.root=/data/my_folder --config.model.num_classes=5

Images of several sizes need --config.data.eval_pad_size='(H,W)' (at least the largest).
"""
from ml_collections import config_dict

from configs import default


def get_config():
  config = default.get_config()
  config.model.name = 'hrnet_w48'
  config.model.head = 'seg'
  config.model.num_classes = 19           # set to the number of lines of your class file
  config.init_checkpoint = config_dict.placeholder(str)   # converted official checkpoint
  config.task = 'segmentation'
  config.data.name = 'folder'
  config.data.crop_size = (512, 512)
  config.data.base_size = 1024
  config.data.num_workers = 4
  config.loss.class_weights = ()          # the Cityscapes weights do not fit other classes
  config.loss.ohem = True
  config.loss.ohem_thresh = 0.9
  config.loss.ohem_min_kept = 131072
  config.loss.chunk_images = 0            # pool the whole batch (default: 3 per GPU)
  config.global_batch_size = 8
  config.num_train_steps = 10_000
  config.optimizer.learning_rate = 0.001
  config.optimizer.weight_decay = 5e-4
  config.eval.every_steps = 1000
  config.eval.global_batch_size = 4
  config.checkpoint.every_steps = 1000
  return config

"""HRNetV2-W48 on ADE20K, 150 classes (official recipe: 43.1 mIoU single scale).

4 GPUs x 4 = batch 16, crop 520x520 (base size 520), SGD 0.9, lr 0.02 poly(0.9),
wd 1e-4, 120 epochs of 20,210 images (1263 iterations each, drop_last) = 151,560
iterations, scale factor 11, OHEM (thresh 0.9, min_kept 131072 per GPU of 4 images),
from the ImageNet W48. Evaluation: sliding 520x520 windows, black padding.

Run:
  python -m hrnet_jax.convert --src hrnetv2_w48_imagenet_pretrained.pth \\
      --out checkpoints/hrnetv2_w48_imagenet
  python train.py --config=configs/ade20k_w48.py --workdir=/tmp/ade20k_w48 \\
      --config.data.manual_dir=/path/to/ade20k_zip
"""
from configs import default


def get_config():
  config = default.get_config()
  config.model.name = 'hrnet_w48'
  config.model.num_classes = 150
  config.init_checkpoint = 'checkpoints/hrnetv2_w48_imagenet'
  config.data.name = 'ade20k'
  config.data.crop_size = (520, 520)
  config.data.base_size = 520
  config.data.scale_factor = 11
  config.data.eval_pad_size = (2048, 2048)     # raise it if an image is larger
  config.global_batch_size = 16
  config.num_train_steps = 151_560
  config.optimizer.learning_rate = 0.02
  config.optimizer.weight_decay = 1e-4
  config.loss.class_weights = ()
  config.loss.ohem = True
  config.loss.ohem_thresh = 0.9
  config.loss.ohem_min_kept = 131072
  config.loss.chunk_images = 4                 # 4 images per GPU
  config.eval.mode = 'sliding'
  config.eval.crop_size = (520, 520)
  config.eval.window_layout = 'pad'
  config.eval.global_batch_size = 8
  return config

"""HRNetV2-W48 on LIP, 20 classes (official `pytorch-v1.1` yaml, 55.83 mIoU with flip).

4 GPUs x 10 = batch 40, crop 473x473, SGD 0.9, lr 0.007 poly(0.9), wd 5e-4, 150 epochs
of 30,462 images (761 iterations each, drop_last) = 114,150 iterations, scale factor
11, LIP's flip that swaps left/right classes, from the ImageNet W48. Evaluation: each
image resized to 473x473 and the prediction back to the label size (official testval).

Run:
  python -m hrnet_jax.convert --src hrnetv2_w48_imagenet_pretrained.pth \\
      --out checkpoints/hrnetv2_w48_imagenet
  python train.py --config=configs/lip_w48.py --workdir=/tmp/lip_w48 \\
      --config.data.manual_dir=/path/to/lip_zips
"""
from configs import default


def get_config():
  config = default.get_config()
  config.model.name = 'hrnet_w48'
  config.model.num_classes = 20
  config.init_checkpoint = 'checkpoints/hrnetv2_w48_imagenet'
  config.data.name = 'lip'
  config.data.crop_size = (473, 473)
  config.data.base_size = 473
  config.data.scale_factor = 11
  config.data.eval_pad_size = (1024, 1024)     # raise it if an image is larger
  config.global_batch_size = 40
  config.num_train_steps = 114_150
  config.optimizer.learning_rate = 0.007
  config.optimizer.weight_decay = 5e-4
  config.loss.class_weights = ()
  config.loss.chunk_images = 10                # 10 images per GPU
  config.eval.resize_input = (473, 473)
  config.eval.global_batch_size = 8
  return config

"""HRNetV2-W48 on PASCAL-Context, 59 classes (official `pytorch-v1.1` yaml).

4 GPUs x 4 = batch 16, crop 480x480 (base size 520), SGD 0.9, lr 0.004 poly(0.9),
wd 1e-4, 200 epochs of 4998 images (312 iterations each, drop_last) = 62,400
iterations, no class weights, from the ImageNet W48. Published: 54.1 mIoU (ms + flip).
Evaluation during training: sliding 480x480 windows on the base-size image, black
padding ('pad' layout), as the base code.

Run:
  python -m hrnet_jax.convert --src hrnetv2_w48_imagenet_pretrained.pth \\
      --out checkpoints/hrnetv2_w48_imagenet
  python train.py --config=configs/pascal_context_w48.py --workdir=/tmp/pascal_context_w48 \\
      --config.data.manual_dir=/path/to/pascal_context_archives
"""
from configs import default


def get_config():
  config = default.get_config()
  config.model.name = 'hrnet_w48'
  config.model.num_classes = 59
  config.init_checkpoint = 'checkpoints/hrnetv2_w48_imagenet'
  config.data.name = 'pascal_context_59'
  config.data.crop_size = (480, 480)
  config.data.base_size = 520
  config.data.scale_factor = 16
  config.data.eval_pad_size = (512, 512)       # images are at most 500x500
  config.global_batch_size = 16
  config.num_train_steps = 62_400
  config.optimizer.learning_rate = 0.004
  config.optimizer.weight_decay = 1e-4
  config.loss.class_weights = ()
  config.loss.chunk_images = 4                 # 4 images per GPU
  config.eval.mode = 'sliding'
  config.eval.crop_size = (480, 480)
  config.eval.window_layout = 'pad'
  config.eval.global_batch_size = 8
  return config

"""HRNetV2-W48 + OCR on PASCAL-Context, 59 classes (`HRNet-OCR` branch yaml
seg_hrnet_ocr_w48_cls59_520x520_sgd_lr1e-3_wd1e-4_bs_16_epoch200; 56.2 mIoU ms + flip).

4 GPUs x 4 = batch 16, crop 520x520 (base size 520), SGD 0.9, lr 0.001 poly(0.9),
wd 1e-4, 200 epochs of 4998 images (312 iterations each, drop_last) = 62,400
iterations, no class weights, loss 0.4 * CE(aux) + 1.0 * CE(final), from the ImageNet
W48. The OCR head (official names containing 'cls', 'aux' or 'ocr': conv3x3_ocr,
ocr_distri_head, aux_head, cls_head) trains at 10x the rate (NONBACKBONE_KEYWORDS /
NONBACKBONE_MULT; see hrnet_jax/training/optim.py). align_corners=True and BN momentum
0.1 are the `ocr` head's family defaults.

Run:
  python -m hrnet_jax.convert --src hrnetv2_w48_imagenet_pretrained.pth \\
      --out checkpoints/hrnetv2_w48_imagenet
  python train.py --config=configs/pascal_context_ocr_w48.py \\
      --workdir=/tmp/pascal_context_ocr_w48 \\
      --config.data.manual_dir=/path/to/pascal_context_archives
"""
from configs import pascal_context_w48


def get_config():
  config = pascal_context_w48.get_config()
  config.model.head = 'ocr'
  config.data.crop_size = (520, 520)
  config.data.base_size = 520
  config.optimizer.learning_rate = 0.001
  config.optimizer.weight_decay = 1e-4
  config.optimizer.nonbackbone_keywords = ('cls', 'aux', 'ocr')
  config.optimizer.nonbackbone_mult = 10.0
  config.loss.aux_weight = 0.4
  config.eval.crop_size = (520, 520)
  return config

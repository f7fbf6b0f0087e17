"""HRNetV2-W48 + OCR on Cityscapes (the `HRNet-OCR` branch recipe, 80.9 / 81.6 mIoU).

Batch 12, crop 512x1024, SGD 0.9, lr 0.01 poly(0.9), wd 5e-4, 484 epochs, class weights,
from the ImageNet W48. The OCR-branch conventions: align_corners=True everywhere
(fusion, head, loss, inference) and BN momentum 0.1 (the `ocr` head's family
defaults); loss 0.4 * CE(aux) + 1.0 * CE(final) (OHEM, if enabled, on the final only).
One learning rate for every parameter: the official Cityscapes OCR yamls set no
NONBACKBONE_KEYWORDS (the PASCAL-Context and COCO-Stuff ones do: configs/
pascal_context_ocr_w48.py); --config.optimizer.nonbackbone_keywords="('cls','aux','ocr')"
gives the OCR head 10x the rate as those.

Run:
  python -m hrnet_jax.convert --src hrnetv2_w48_imagenet_pretrained.pth \\
      --out checkpoints/hrnetv2_w48_imagenet
  python train.py --config=configs/cityscapes_ocr_w48.py --workdir=/tmp/cityscapes_ocr_w48 \\
      --config.data.manual_dir=/path/to/cityscapes_zips
"""
from configs import cityscapes_w48


def get_config():
  config = cityscapes_w48.get_config()
  config.model.head = 'ocr'
  config.loss.aux_weight = 0.4
  config.optimizer.nonbackbone_keywords = ()   # the official yaml has none
  return config

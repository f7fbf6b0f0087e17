"""HRNet modules: variant table, blocks, backbone, heads and the model factory."""
from hrnet_jax.models.backbone import HighResolutionModule, HRNetBackbone
from hrnet_jax.models.blocks import BasicBlock, Bottleneck
from hrnet_jax.models.factory import (DEFAULT_NUM_CLASSES, FAMILY_DEFAULTS, HEADS, HRNet,
                                      create_model, model_options_dict)
from hrnet_jax.models.heads import ClsHead, PoseHead, PyramidHead, SegHead
from hrnet_jax.models.layers import BatchNorm, Conv2d, Linear, ModelOptions
from hrnet_jax.models.ocr import OCRHead
from hrnet_jax.models.resize import resize_bilinear, resize_nearest
from hrnet_jax.models.specs import VARIANTS, StageSpec, VariantSpec, get_spec

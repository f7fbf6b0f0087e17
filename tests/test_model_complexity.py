"""Parameter counts and multiply-adds against the published figures (no allocation)."""
import jax
import numpy as np
import pytest

import hrnet_jax

# Official HRNet-Image-Classification README: params (M) and GFLOPs at 224x224.
PUBLISHED_CLS = {
    'hrnet_w18_small_v1': (13.2, 1.49),
    'hrnet_w18_small_v2': (15.6, 2.42),
    'hrnet_w18': (21.3, 3.99),
    'hrnet_w30': (37.7, 7.55),
    'hrnet_w32': (41.2, 8.31),
    'hrnet_w40': (57.6, 11.8),
    'hrnet_w44': (67.1, 13.9),
    'hrnet_w48': (77.5, 16.1),
    'hrnet_w64': (128.1, 26.9),
}
# Official HRNet-Semantic-Segmentation README, Cityscapes (19 classes) at 1024x2048.
PUBLISHED_SEG = {
    'hrnet_w48': (65.86, 696.2),
    'hrnet_w18_small_v1': (1.54, 31.1),
    'hrnet_w18_small_v2': (3.94, 71.6),
}


def test_every_official_variant_is_in_the_table():
  assert set(hrnet_jax.VARIANTS) == set(PUBLISHED_CLS)


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(PUBLISHED_CLS))
def test_classification_params_and_gflops_match_published(name):
  params_m, gflops = PUBLISHED_CLS[name]
  model = hrnet_jax.create_model(name, head='cls', num_classes=1000)
  assert round(hrnet_jax.count_params(model) / 1e6, 1) == params_m
  assert hrnet_jax.gflops(model, (224, 224)) == pytest.approx(gflops, rel=0.01)


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(PUBLISHED_SEG))
def test_segmentation_params_and_gflops_match_published(name):
  params_m, gflops = PUBLISHED_SEG[name]
  model = hrnet_jax.create_model(name, head='seg', num_classes=19)
  assert round(hrnet_jax.count_params(model, (64, 64)) / 1e6, 2) == params_m
  assert hrnet_jax.gflops(model, (1024, 2048)) == pytest.approx(gflops, rel=0.01)


def test_w48_backbone_alone_has_published_size():
  model = hrnet_jax.create_model('hrnet_w48', head='seg', num_classes=19)
  abstract = jax.eval_shape(
      lambda x: model.init(jax.random.key(0), x),
      jax.ShapeDtypeStruct((1, 64, 64, 3), np.float32))
  backbone = sum(np.prod(v.shape) for v in jax.tree.leaves(abstract['params']['backbone']))
  assert round(backbone / 1e6, 2) == 65.33


def test_macs_of_single_layers_by_hand():
  # A 3x3 stride-2 conv 3->64 on 100x60 gives a 50x30x64 map, 9*3 MACs per element.
  conv = hrnet_jax.models.Conv2d(64, 3, 2)
  assert hrnet_jax.count_macs(conv, (100, 60)) == 50 * 30 * 64 * 9 * 3


def test_macs_scale_with_the_input_area():
  model = hrnet_jax.create_model('hrnet_w18_small_v1', head='seg')
  total = hrnet_jax.count_macs(model, (256, 512))
  # Doubling both sides quadruples every map: MACs scale by exactly 4 (sizes % 32 == 0).
  assert hrnet_jax.count_macs(model, (512, 1024)) == 4 * total


def test_pose_w32_matches_published_size():
  # deep-high-resolution-net.pytorch: pose_hrnet_w32 256x192 has 28.5M params, 7.1 GFLOPs
  # in the same multiply-adds / 2^30 convention.
  model = hrnet_jax.create_model('hrnet_w32', head='pose', num_classes=17)
  assert round(hrnet_jax.count_params(model, (256, 192)) / 1e6, 1) == 28.5
  assert hrnet_jax.gflops(model, (256, 192)) == pytest.approx(7.1, rel=0.01)

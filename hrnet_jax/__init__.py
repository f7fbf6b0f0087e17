"""hrnet-jax: HRNet (Deep High-Resolution Representation Learning) in JAX/Flax.

    import hrnet_jax
    model = hrnet_jax.create_model('hrnet_w48', head='seg', num_classes=19)
    variables = model.init(jax.random.key(0), images)
    logits = model.apply(variables, images, train=False)   # (N, H/4, W/4, 19)
"""
from hrnet_jax.flops import count_macs, count_params, gflops
from hrnet_jax.models import (FAMILY_DEFAULTS, HEADS, VARIANTS, HRNet, create_model,
                              resize_bilinear, resize_nearest)

__version__ = '0.1.0'

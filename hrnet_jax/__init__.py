"""hrnet-jax: HRNet (Deep High-Resolution Representation Learning) in JAX/Flax.

    import hrnet_jax
    model = hrnet_jax.create_model('hrnet_w48', head='seg', num_classes=19)
    variables = model.init(jax.random.key(0), images)
    logits = model.apply(variables, images, train=False)   # (N, H/4, W/4, 19)

Names are imported on first use: data-loader worker processes import `hrnet_jax.data`
and should not pay for importing JAX and Flax.
"""
import importlib

__version__ = '0.1.0'

_EXPORTS = {
    'create_model': 'hrnet_jax.models',
    'HRNet': 'hrnet_jax.models',
    'FAMILY_DEFAULTS': 'hrnet_jax.models',
    'HEADS': 'hrnet_jax.models',
    'VARIANTS': 'hrnet_jax.models',
    'resize_bilinear': 'hrnet_jax.models',
    'resize_nearest': 'hrnet_jax.models',
    'count_macs': 'hrnet_jax.flops',
    'count_params': 'hrnet_jax.flops',
    'gflops': 'hrnet_jax.flops',
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
  if name in _EXPORTS:
    return getattr(importlib.import_module(_EXPORTS[name]), name)
  try:
    return importlib.import_module(f'{__name__}.{name}')
  except ModuleNotFoundError as e:
    if e.name != f'{__name__}.{name}':
      raise
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}') from None


def __dir__():
  return sorted(set(globals()) | set(_EXPORTS))

"""Datasets (TFDS) and the deterministic, resumable, multi-host input pipeline.

    from hrnet_jax import data
    info = data.get_dataset_info('cityscapes')        # classes, palette, label mapping
    info = data.dataset_info(config.data)            # also data.name=folder (data.root)
    train = data.make_train_loader(config, process_index=jax.process_index(),
                                   process_count=jax.process_count())
    batch = next(train)            # {'image': uint8 (b, H, W, 3), 'label': int32 (b, H, W)}
    state = train.get_state()      # JSON-able; train.set_state(state) resumes exactly
    for batch in data.make_eval_loader(config, ...): ...   # + 'mask', 'height', 'width'
    images = data.normalize(batch['image'])                # on device, float32

Heavy modules (grain, TFDS, TensorFlow, JAX) load on first use of what needs them.
"""
import importlib

from hrnet_jax.data.errors import DataError
from hrnet_jax.data.registry import DatasetInfo, dataset_info, dataset_names, get_dataset_info

_LAZY = {
    'normalize': 'hrnet_jax.data.normalization',
    'MEAN_RGB': 'hrnet_jax.data.normalization',
    'STD_RGB': 'hrnet_jax.data.normalization',
    'make_train_loader': 'hrnet_jax.data.loader',
    'make_eval_loader': 'hrnet_jax.data.loader',
    'TrainLoader': 'hrnet_jax.data.loader',
    'EvalLoader': 'hrnet_jax.data.loader',
    'get_builder': 'hrnet_jax.data.sources',
    'build_datasets': 'hrnet_jax.data.sources',
}

__all__ = ['DataError', 'DatasetInfo', 'dataset_info', 'dataset_names', 'get_dataset_info',
           *_LAZY]


def __getattr__(name):
  if name in _LAZY:
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')

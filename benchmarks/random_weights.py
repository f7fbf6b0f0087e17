"""Random variables for timing a model, without compiling its `init`."""
import jax
import jax.numpy as jnp
import numpy as np


def random_variables(model, rng: np.random.Generator, kernel_std: float | None = None):
  """Identity BatchNorm (unit scale and variance, zero mean and bias) and normal kernels:
  LeCun-scaled (std sqrt(1 / fan_in), so activations stay O(1) through the net and relative
  errors are measured on meaningful magnitudes) or of `kernel_std`."""
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)),
                                               train=False))

  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    if 'var' in name or 'scale' in name:
      return np.ones(leaf.shape, np.float32)
    if 'mean' in name or 'bias' in name:
      return np.zeros(leaf.shape, np.float32)
    std = np.sqrt(1.0 / np.prod(leaf.shape[:-1])) if kernel_std is None else kernel_std
    return (std * rng.standard_normal(leaf.shape)).astype(np.float32)
  return jax.tree_util.tree_map_with_path(fill, abstract)

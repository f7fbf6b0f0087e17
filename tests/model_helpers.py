"""Test helpers for the model tests: variables without a compiled init."""
import jax
import jax.numpy as jnp
import numpy as np


def random_variables(model, input_shape, seed=0, dtype=np.float32):
  """Random params and BN statistics of the right shapes, made in numpy.

  Shapes come from `jax.eval_shape`, so nothing is compiled; values are O(1) so that
  every layer's contribution is visible in the output.
  """
  abstract = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False),
                            jax.ShapeDtypeStruct(input_shape, jnp.float32))
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    if name.endswith("['var']"):
      return rng.uniform(0.5, 1.5, leaf.shape).astype(dtype)
    if name.endswith("['scale']"):
      return rng.uniform(0.5, 1.5, leaf.shape).astype(dtype)
    if name.endswith("['kernel']"):
      fan_in = int(np.prod(leaf.shape[:-1]))
      return (rng.standard_normal(leaf.shape) * np.sqrt(2.0 / fan_in)).astype(dtype)
    return (rng.standard_normal(leaf.shape) * 0.1).astype(dtype)

  return jax.tree_util.tree_map_with_path(fill, abstract)

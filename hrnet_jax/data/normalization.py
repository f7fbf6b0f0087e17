"""Normalisation on the accelerator: uint8 RGB -> float32 with the ImageNet mean/std."""
import jax.numpy as jnp

MEAN_RGB = (0.485, 0.456, 0.406)
STD_RGB = (0.229, 0.224, 0.225)


def normalize(images, dtype=jnp.float32) -> jnp.ndarray:
  """(..., 3) uint8 RGB -> `(x / 255 - mean) / std` in `dtype` (float32, or float64 for a
  float64 model), as the official input_transform.

  Batches travel as uint8 (4x less host-to-device traffic) and are normalised here, inside
  the jitted step.
  """
  x = jnp.asarray(images).astype(dtype) / 255.0
  return (x - jnp.asarray(MEAN_RGB, dtype)) / jnp.asarray(STD_RGB, dtype)

"""HRNet in JAX/Flax."""

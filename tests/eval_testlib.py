"""Shared helpers of the evaluation tests: a tiny checkpoint, a synthetic config, a CLI runner."""
import os
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F

import hrnet_jax
from hrnet_jax import checkpointing
from hrnet_jax.evaluation import inference

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = 'hrnet_w18_small_v1'
if REPO not in sys.path:   # config files import `configs.default`
  sys.path.insert(0, REPO)


class TinySeg(nn.Module):
  """Two stride-2 convs: logits at ceil(H/4) x ceil(W/4), like the HRNet seg head."""
  num_classes: int

  @nn.compact
  def __call__(self, x, train=False):
    pad = ((1, 1), (1, 1))
    x = nn.relu(nn.Conv(8, (3, 3), strides=2, padding=pad, name='c1')(x))
    return nn.Conv(self.num_classes, (3, 3), strides=2, padding=pad, name='c2')(x)


def random_variables(model, seed: int = 0, num_classes: int = 19):
  """He-scaled random weights and unit BN statistics, without compiling `init`.

  Predictions of such a network vary over the image (several classes), so tests can
  tell one image's prediction from another's.
  """
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)),
                                               train=False))
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    shape = leaf.shape
    if 'var' in name:
      return np.ones(shape, np.float32)
    if 'mean' in name or 'bias' in name:
      return (0.1 * rng.normal(size=shape)).astype(np.float32)
    if 'scale' in name:
      return np.ones(shape, np.float32)
    fan_in = int(np.prod(shape[:-1])) or 1
    std = np.sqrt(2.0 / fan_in)
    if "'head'" in name and shape[-1] == num_classes:
      # Logits of a few units, as a trained network's: exp() (the official protocol)
      # overflows float32 beyond 88.
      std *= 0.02
    return (rng.normal(size=shape) * std).astype(np.float32)

  return jax.tree_util.tree_map_with_path(fill, abstract)


def save_checkpoint(directory, *, model_name=MODEL, num_classes=19, seed=0, dataset=None):
  model = hrnet_jax.create_model(model_name, head='seg', num_classes=num_classes)
  variables = random_variables(model, seed, num_classes)
  meta = dict(model=model_name, head='seg', num_classes=num_classes, options={},
              source='random weights for tests')
  if dataset:
    meta['dataset'] = dataset
  checkpointing.save_model(str(directory), variables, meta)
  return model, variables


def reference_labels(model, variables, images_uint8, *, align_corners=False):
  """Whole-image prediction the plain way: apply, torch bilinear upsample, argmax.

  `images_uint8`: (H, W, 3) or a batch (N, H, W, 3) of one size.
  """
  images = np.asarray(images_uint8)
  single = images.ndim == 3
  images = images[None] if single else images
  logits = np.asarray(jax.jit(model.apply)(variables, inference.normalize(images)))
  t = torch.from_numpy(logits.transpose(0, 3, 1, 2).copy())
  up = F.interpolate(t, size=images.shape[1:3], mode='bilinear', align_corners=align_corners)
  labels = up.argmax(1).numpy()
  return labels[0] if single else labels


def write_config(path, *, data_dir, model_name=MODEL, extra=''):
  """A config file for the CLIs: the tiny synthetic dataset, a small model."""
  path.write_text(textwrap.dedent(f'''
      from configs import default

      def get_config():
        c = default.get_config()
        c.model.name = {model_name!r}
        c.data.name = 'hrnet_synthetic_tiny'
        c.data.data_dir = {str(data_dir)!r}
        c.data.base_size = 128
        c.data.num_workers = 0
        c.eval.global_batch_size = 8
        c.eval.crop_size = (64, 128)
        c.eval.num_pictures = 3
      ''') + textwrap.indent(textwrap.dedent(extra), '  ') + '  return c\n')
  return str(path)


def run_cli(args, *, timeout=300, cwd=REPO):
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
  env['XLA_FLAGS'] = '--xla_force_host_platform_device_count=2'
  return subprocess.run([sys.executable] + list(args), capture_output=True, text=True,
                        timeout=timeout, cwd=cwd, env=env)

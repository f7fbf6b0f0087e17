"""A task defined in this file alone trains end to end through train_and_evaluate.

The toy task is per-pixel regression: predict each pixel's grey level (the mean of its
RGB values, scaled to [0, 1]) from the image, on the tiny synthetic scenes, with
the 'seg' head and one output channel. It has its own batch keys ('target', no
'label'), its own loss (mean squared error of the output upsampled to the target
size), its own evaluator (squared error summed over every device and host) and its own
best-checkpoint score (-MSE). Nothing outside this file knows it: the config names it
by module path (`config.task = 'tests.test_task_plugin'`), as a user's own task would be.

The run is a child process (`python tests/test_task_plugin.py WORKDIR`), as the other
training tests: training imports TensorFlow, which must stay out of the PyTorch test
process. The child also evaluates the initial parameters (the trainer's own init with
the same seed) and recomputes the final MSE on the host with numpy and OpenCV, so the
test checks both that the task learned and that its evaluator counts exactly.
"""
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The tiny scenes are 64x128: 64x64 windows keep 2x2 pixels in HRNet's 1/32 branch
# (smaller crops leave BatchNorm batch statistics of single pixels).
CROP = 64


@dataclasses.dataclass(frozen=True)
class GreyTrain:
  """Random CROP x CROP crop; target = grey level in [0, 1]."""
  image_key: str

  def __call__(self, example, rng, what):
    from hrnet_jax.data import sources  # pylint: disable=g-import-not-at-top
    bgr = sources.decode_image(example[self.image_key], what)
    y = int(rng.integers(0, bgr.shape[0] - CROP + 1))
    x = int(rng.integers(0, bgr.shape[1] - CROP + 1))
    image = np.ascontiguousarray(bgr[y:y + CROP, x:x + CROP, ::-1])
    return {'image': image, 'target': grey(image)}

  def finish_batch(self, batch):
    return batch


@dataclasses.dataclass(frozen=True)
class GreyEval:
  """The left CROP x CROP square of every image."""
  image_key: str

  def __call__(self, example, what):
    from hrnet_jax.data import sources  # pylint: disable=g-import-not-at-top
    image = np.ascontiguousarray(sources.decode_image(example[self.image_key], what)
                                 [:CROP, :CROP, ::-1])
    return {'image': image, 'target': grey(image)}

  def padding(self):
    return {'image': np.zeros((CROP, CROP, 3), np.uint8),
            'target': np.zeros((CROP, CROP), np.float32)}


def grey(image):
  return (image.astype(np.float32).mean(-1) / 255.0).astype(np.float32)


def _upsampled(outputs, size):
  from hrnet_jax.models import resize  # pylint: disable=g-import-not-at-top
  return resize.resize_bilinear(outputs.astype('float32'), tuple(size),
                                align_corners=False)[..., 0]


class GreyEvaluator:
  """Sum of squared errors and pixel count over the unpadded examples of every process."""

  def __init__(self, model, variables, mesh):
    import jax  # pylint: disable=g-import-not-at-top
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    from hrnet_jax.data import normalization  # pylint: disable=g-import-not-at-top
    self.variables, self.mesh = variables, mesh

    def step(variables, images, targets, mask):
      pred = _upsampled(model.apply(variables, normalization.normalize(images), train=False),
                        targets.shape[1:3])
      weight = mask.astype(jnp.float32)[:, None, None]
      sse = jnp.sum(weight * (pred - targets) ** 2)
      return jnp.stack([sse, jnp.sum(weight) * targets.shape[1] * targets.shape[2]]), pred

    self.step = jax.jit(step)
    self.total = np.zeros(2, np.float64)

  def update(self, batch):
    from hrnet_jax.evaluation import evaluator, metrics  # pylint: disable=g-import-not-at-top
    put = lambda x: evaluator.to_global(np.asarray(x), self.mesh)
    sums, pred = self.step(self.variables, put(batch['image']), put(batch['target']),
                           put(evaluator.batch_mask(batch)))
    self.total += np.asarray(metrics.fetch_replicated(sums), np.float64)
    return pred

  def local_predictions(self, outputs):
    from hrnet_jax.evaluation import evaluator  # pylint: disable=g-import-not-at-top
    return evaluator.local_rows(outputs, self.mesh)

  def picture(self, batch, predictions, i):
    return batch['image'][i], batch['target'][i], predictions[i]

  def result(self):
    mse = float(self.total[0] / max(self.total[1], 1.0))
    return {'mse': mse, 'neg_mse': -mse}


def _make_task():
  from hrnet_jax import tasks  # pylint: disable=g-import-not-at-top

  class GreyTask(tasks.Task):
    """Per-pixel regression of the grey level."""
    name = 'grey'
    score_name = 'neg_mse'
    config_fields = ('model.num_classes',)

    def train_transform(self, config, info):
      return GreyTrain(info.image_key)

    def eval_transform(self, config, info, source):
      return GreyEval(info.image_key)

    def make_loss(self, model, config):
      import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

      def loss(outputs, batch):
        return jnp.mean((_upsampled(outputs, batch['target'].shape[1:3])
                         - batch['target']) ** 2)

      return loss

    def make_evaluator(self, model, variables, *, config, mesh, protocol=None):
      return GreyEvaluator(model, variables, mesh)

    def picture(self, result, config):
      rows = []
      for image, target, pred in result['pictures']:
        as_rgb = lambda g: np.repeat(np.clip(g * 255, 0, 255).astype(np.uint8)[..., None],
                                     3, -1)
        rows.append(np.concatenate([image, as_rgb(target), as_rgb(pred)], axis=1))
      return np.concatenate(rows, axis=0) if rows else None

  return GreyTask()


TASK = _make_task()


def _host_mse(model, variables, loader):
  """MSE of the model over the eval loader's unpadded examples, numpy + cv2 only."""
  import cv2  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from hrnet_jax.data import normalization  # pylint: disable=g-import-not-at-top
  apply = jax.jit(lambda v, x: model.apply(v, normalization.normalize(x), train=False))
  sse, count = 0.0, 0
  for batch in loader:
    out = np.asarray(apply(variables, batch['image']), np.float32)
    for i in np.flatnonzero(batch['mask']):
      target = batch['target'][i]
      # cv2 INTER_LINEAR is half-pixel bilinear (align_corners=False), no antialias.
      pred = cv2.resize(out[i, ..., 0], target.shape[::-1], interpolation=cv2.INTER_LINEAR)
      sse += float(np.sum((pred.astype(np.float64) - target) ** 2))
      count += target.size
  return sse / count


def _child(workdir):
  """Trains the toy task in this process and writes what the test checks."""
  sys.path.insert(0, os.path.join(ROOT, 'tests'))
  sys.path.insert(0, ROOT)
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.use_absl_handler()
  logging.set_verbosity(logging.INFO)   # outside absl.app only warnings are logged
  import jax  # pylint: disable=g-import-not-at-top
  from hrnet_jax import data  # pylint: disable=g-import-not-at-top
  from hrnet_jax.evaluation import evaluator  # pylint: disable=g-import-not-at-top
  from hrnet_jax.training import optim, sharding, trainer  # pylint: disable=g-import-not-at-top
  from hrnet_jax.training import step as ts  # pylint: disable=g-import-not-at-top
  from train_driver import tiny_config  # pylint: disable=g-import-not-at-top

  config = tiny_config()
  config.task = 'tests.test_task_plugin'
  config.model.num_classes = 1
  config.num_train_steps = 40
  config.global_batch_size = 4
  config.optimizer.learning_rate = 0.01
  config.eval.every_steps = 20
  config.eval.num_pictures = 2
  config.checkpoint.every_steps = 15
  config.log_every_steps = 10

  state = trainer.train_and_evaluate(config, workdir)
  model = trainer.build_model(config)
  mesh = sharding.make_mesh(config.mesh)
  loader = data.make_eval_loader(config)
  tx, _ = optim.make_optimizer(config.optimizer, config.num_train_steps)
  init, _ = ts.create_state(model, tx, seed=config.seed, mesh=mesh)
  variables = lambda s: {'params': s.params, 'batch_stats': s.batch_stats}
  before = evaluator.evaluate(model, variables(init), loader, config=config, mesh=mesh)
  after = evaluator.evaluate(model, variables(state), loader, config=config, mesh=mesh)
  host = _host_mse(model, jax.device_get(variables(state)), loader)
  with open(os.path.join(workdir, 'toy.json'), 'w') as f:
    json.dump({'before': before['mse'], 'after': after['mse'], 'host': host,
               'num_examples': after['num_examples'], 'step': int(state.step)}, f)


@pytest.mark.slow
def test_a_task_from_a_test_file_trains_through_train_and_evaluate(tmp_path):
  sys.path.insert(0, os.path.join(ROOT, 'tests'))
  from test_train_resume import child_env  # pylint: disable=g-import-not-at-top
  result = subprocess.run([sys.executable, os.path.abspath(__file__), str(tmp_path)],
                          env=child_env(2), capture_output=True, text=True, timeout=1200,
                          cwd=ROOT)
  assert result.returncode == 0, result.stderr[-4000:]
  toy = json.loads((tmp_path / 'toy.json').read_text())
  assert toy['step'] == 40
  # It learned: the squared error of the grey level fell to well under half.
  assert toy['after'] < 0.5 * toy['before'], toy
  # The evaluator's device sums equal a host recomputation with numpy and OpenCV.
  np.testing.assert_allclose(toy['after'], toy['host'], rtol=1e-4)
  final = json.loads((tmp_path / 'final_metrics.json').read_text())
  assert final['step'] == 40
  np.testing.assert_allclose(final['eval/mse'], toy['after'], rtol=1e-6)
  np.testing.assert_allclose(final['eval/score'], -toy['after'], rtol=1e-6)
  # The trainer wrote the task's picture and kept a best checkpoint by its score.
  assert sorted(os.listdir(tmp_path / 'pictures')) == ['step_0000020.png', 'step_0000040.png']
  assert 'train/loss=' in result.stderr


if __name__ == '__main__':
  _child(sys.argv[1])

"""A training run in its own process, for the resume, multi-process and config tests.

    python tests/train_driver.py WORKDIR [--signal term|kill --at STEP]
        [--process_id I --num_processes N --port P] [--config NAME] [--set key=value ...]
        [--evaluate CHECKPOINT]

Training runs in a child process because it imports TensorFlow (TensorBoard writers,
TFDS), which must not share a process with PyTorch from other tests, and because
kill -9 needs a process to kill. `--signal` delivers SIGTERM or SIGKILL to itself
right after STEP was dispatched (for kill, once the checkpoint before it is on disk,
so the restart has something to resume from). `--evaluate` runs eval.py's `run` on
CHECKPOINT instead of training, with WORKDIR as its output directory (eval.py itself
takes its multi-host set-up from flags; this takes it from the same arguments as
training).
"""
import argparse
import ast
import importlib.util
import os
import signal
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(name='quickstart'):
  """The named config shrunk to seconds: tiny synthetic data, 64x64 crops, 8 steps."""
  sys.path.insert(0, ROOT)
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, 'configs',
                                                                   f'{name}.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.model.name = 'hrnet_w18_small_v1'
  config.data.name = 'hrnet_synthetic_tiny'
  config.data.crop_size = (64, 64)
  config.data.base_size = 128
  config.data.num_workers = 0
  config.global_batch_size = 4
  config.loss.chunk_images = 2
  config.num_train_steps = 8
  config.optimizer.learning_rate = 0.01
  config.checkpoint.every_steps = 3
  config.eval.every_steps = -1
  config.eval.global_batch_size = 4
  config.eval.crop_size = (64, 128)
  config.log_every_steps = 2
  return config


def _set(config, assignment):
  key, value = assignment.split('=', 1)
  *parents, leaf = key.split('.')
  target = config
  for p in parents:
    target = target[p]
  try:
    value = ast.literal_eval(value)
  except (ValueError, SyntaxError):
    pass
  target[leaf] = value


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('workdir')
  parser.add_argument('--config', default='quickstart')
  parser.add_argument('--set', action='append', default=[])
  parser.add_argument('--signal', choices=('term', 'kill'))
  parser.add_argument('--at', type=int, default=0)
  parser.add_argument('--process_id', type=int)
  parser.add_argument('--num_processes', type=int)
  parser.add_argument('--port', type=int)
  parser.add_argument('--evaluate', metavar='CHECKPOINT')
  args = parser.parse_args()

  sys.path.insert(0, ROOT)
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.use_absl_handler()
  logging.set_verbosity(logging.INFO)   # outside app.run absl logs only warnings
  from hrnet_jax.training import distributed  # pylint: disable=g-import-not-at-top
  if args.num_processes:
    distributed.maybe_initialize(coordinator_address=f'127.0.0.1:{args.port}',
                                 num_processes=args.num_processes,
                                 process_id=args.process_id)
  from hrnet_jax.training import trainer  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_index() != 0:
    logging.set_verbosity(logging.WARNING)   # as train.py: metrics are logged by process 0

  config = tiny_config(args.config)
  for assignment in args.set:
    _set(config, assignment)
  if args.evaluate:
    spec = importlib.util.spec_from_file_location('eval_cli', os.path.join(ROOT, 'eval.py'))
    eval_cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(eval_cli)
    eval_cli.run(config, checkpoint=args.evaluate, workdir=args.workdir)
    return

  def callback(step):
    if args.signal is None or step != args.at:
      return
    if args.signal == 'term':
      os.kill(os.getpid(), signal.SIGTERM)
      return
    previous = step - step % config.checkpoint.every_steps
    deadline = time.time() + 120
    while not os.path.isdir(os.path.join(args.workdir, 'checkpoints', str(previous))):
      if time.time() > deadline:
        sys.exit(f'checkpoint {previous} never appeared')
      time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGKILL)

  try:
    trainer.train_and_evaluate(config, args.workdir, step_callback=callback)
  except trainer.NonFiniteLossError as e:
    sys.exit(f'error: {e}')


if __name__ == '__main__':
  main()

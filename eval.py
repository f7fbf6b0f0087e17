r"""Evaluate a checkpoint with the official test protocol.

  python eval.py --config=configs/cityscapes_w48.py --checkpoint=CKPT --workdir=OUT
  # multi-scale + flip, as the published ms+flip numbers:
  python eval.py --config=configs/cityscapes_w48.py --checkpoint=CKPT --workdir=OUT \
      --config.eval.mode=sliding --config.eval.stride_rate=1.0 \
      --config.eval.scales='(0.5,0.75,1.0,1.25,1.5,1.75)' --config.eval.flip=True
  # Cityscapes test-server submission (labelId PNGs):
  python eval.py ... --config.data.eval_split=test --submission_dir=OUT/submission

CKPT is a converted official checkpoint (python -m hrnet_jax.convert), a model
directory or a training workdir (`--which=best` for its best checkpoint). Prints the
per-class IoU table and writes OUT/eval_results.json, TensorBoard scalars,
OUT/per_class_iou.png and prediction pictures in OUT/eval_pictures/.
"""
import os

from absl import app
from absl import flags
import jax
from ml_collections import config_flags

from hrnet_jax import cli
from hrnet_jax import config_validation
from hrnet_jax import data
from hrnet_jax import predict
from hrnet_jax import tasks
from hrnet_jax.evaluation import evaluator
from hrnet_jax.evaluation import outputs as eval_outputs
from hrnet_jax.training import reporting
from hrnet_jax.training import sharding

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
flags.DEFINE_string('checkpoint', None, 'Converted, model or training checkpoint directory.')
flags.DEFINE_string('workdir', None, 'Where results, pictures and TensorBoard logs go.')
flags.DEFINE_string('which', 'latest',
                    "Checkpoint of a training workdir: 'latest' (newest readable), 'best' "
                    'or a step number.')
flags.DEFINE_string('submission_dir', None,
                    'Write one label-id PNG per image here (Cityscapes benchmark layout).')
cli.define_flags(multihost=True)   # --debug; multi-host start-up as train.py
flags.mark_flags_as_required(['config', 'checkpoint', 'workdir'])


def run(config, *, checkpoint: str, workdir: str, which: str = 'latest',
        submission_dir: str | None = None) -> dict:
  model, variables, meta = predict.load_checkpoint_model(checkpoint, which=which,
                                                         config=config)
  info = data.dataset_info(config.data)
  mesh = sharding.make_mesh(config.mesh)
  variables = jax.device_put(variables, sharding.replicated(mesh))
  loader = data.make_eval_loader(config, process_index=jax.process_index(),
                                 process_count=jax.process_count())
  writer = None
  if submission_dir:
    writer = eval_outputs.SubmissionWriter(
        submission_dir, name_of=eval_outputs.example_names(config, info),
        label_to_train_id=info.label_to_train_id, num_classes=int(config.model.num_classes))
  results = evaluator.evaluate(model, variables, loader, config=config, mesh=mesh,
                               on_batch=writer)
  step = int(meta.get('step', 0))
  if jax.process_index() == 0:
    _report(config, results, workdir=workdir, checkpoint=checkpoint, step=step)
  if writer is not None:
    print(f'wrote {len(writer.written)} submission PNGs (label ids) to {submission_dir}')
  return results


def _report(config, results, *, workdir, checkpoint, step):
  os.makedirs(workdir, exist_ok=True)
  extra = dict(checkpoint=os.path.abspath(checkpoint), step=step, dataset=config.data.name,
               split=config.data.eval_split, protocol=config.eval.to_dict())
  tb = reporting.create_writer(workdir)
  extra.update(tasks.task_for_config(config).report(results, config=config,
                                                    workdir=workdir, writer=tb, step=step))
  tb.flush()
  eval_outputs.write_results_json(os.path.join(workdir, eval_outputs.RESULTS_FILE),
                                  results, **extra)
  print(f'results in {os.path.join(workdir, eval_outputs.RESULTS_FILE)}')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if FLAGS.which not in ('latest', 'best') and not FLAGS.which.isdigit():
    raise app.UsageError(f"--which={FLAGS.which}: use 'latest', 'best' or a step number")
  config = config_validation.validate(FLAGS.config, mode='eval')
  cli.start_distributed()
  config_validation.validate_topology(config, device_count=jax.device_count(),
                                      process_count=jax.process_count(), mode='eval')
  cli.writable_dir(FLAGS.workdir, '--workdir')
  if FLAGS.submission_dir:
    cli.writable_dir(FLAGS.submission_dir, '--submission_dir')
  run(config, checkpoint=FLAGS.checkpoint, workdir=FLAGS.workdir, which=FLAGS.which,
      submission_dir=FLAGS.submission_dir)


if __name__ == '__main__':
  cli.run(main)

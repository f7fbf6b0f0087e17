"""Quickstart: HRNet-W18-Small-v1 on the procedural `hrnet_synthetic` scenes, on a CPU.

Needs no download: the dataset is rendered on first use (into ~/tensorflow_datasets).
On a 2-core CPU it finishes in under 10 minutes and reaches mIoU >= 0.80 on the
synthetic validation split; the workdir then holds checkpoints, TensorBoard logs
(`tensorboard --logdir /tmp/q`) and prediction pictures (pictures/*.png).

Run:
  python train.py --config=configs/quickstart.py --workdir=/tmp/q
"""
from configs import default


def get_config():
  config = default.get_config()
  config.model.name = 'hrnet_w18_small_v1'
  config.data.name = 'hrnet_synthetic'
  config.data.crop_size = (128, 256)
  config.data.base_size = 512
  config.data.scale_factor = 11           # scales 0.5 .. 1.5
  config.data.num_workers = 1
  config.loss.class_weights = ()
  config.loss.chunk_images = 0
  config.global_batch_size = 8
  config.num_train_steps = 600
  config.optimizer.learning_rate = 0.05
  config.optimizer.weight_decay = 1e-4
  config.eval.every_steps = 300
  config.eval.global_batch_size = 4
  config.checkpoint.every_steps = 200
  config.log_every_steps = 20
  return config

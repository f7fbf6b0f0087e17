"""Quickstart: HRNet-W18-Small-v1 on the procedural `hrnet_synthetic` scenes, on a CPU.

Needs no download: the dataset (300 train / 100 validation street scenes, 256x512) is
rendered on first use into ~/tensorflow_datasets. On a 2-core CPU it finishes in under
10 minutes and reaches mIoU >= 0.80 on the synthetic validation split; the workdir then
holds checkpoints, TensorBoard logs (`tensorboard --logdir /tmp/q/tensorboard`) and
prediction pictures (`pictures/*.png`: input | label | prediction).

Run:
  python train.py --config=configs/quickstart.py --workdir=/tmp/q

Tuned for a short CPU run rather than copied from a paper recipe: 128x128 crops at
scale 1, lr 0.1 (random init, no ImageNet weights), BN momentum 0.1 so the running
statistics keep up with fast-moving weights, and OHEM (threshold 0.7, at least 16k
pixels) so the thin classes (poles, signs, lights, bicycles) get the gradient.
"""
from configs import default


def get_config():
  config = default.get_config()
  config.model.name = 'hrnet_w18_small_v1'
  config.model.bn_momentum = 0.1
  config.data.name = 'hrnet_synthetic'
  config.data.crop_size = (128, 128)
  config.data.base_size = 512
  config.data.multi_scale = False
  config.data.num_workers = 1
  config.loss.class_weights = ()
  config.loss.chunk_images = 0
  config.loss.ohem = True
  config.loss.ohem_thresh = 0.7
  config.loss.ohem_min_kept = 16384
  config.global_batch_size = 8
  config.num_train_steps = 500
  config.optimizer.learning_rate = 0.1
  config.optimizer.weight_decay = 1e-4
  config.eval.every_steps = 0             # evaluate once, after the last step
  config.eval.global_batch_size = 4
  config.checkpoint.every_steps = 250
  config.log_every_steps = 25
  return config

"""HRNet-W18-C on ImageNet (official HRNet-Image-Classification recipe, 23.2% top-1 err).

4 GPUs x 32 = batch 128, SGD momentum 0.9 Nesterov, lr 0.05, wd 1e-4, x0.1 at epochs
30, 60, 90 of 100; 224x224 random-resized crop + flip; evaluation resize 256 + centre
crop 224. Steps count 10,009 per epoch (1,281,167 images / 128, drop_last); kaiming
init, BN momentum 0.1 (the 'cls' family defaults).

Run (ImageNet archives in the manual dir, see docs/data.md):
  python train.py --config=configs/imagenet_w18_c.py --workdir=/tmp/imagenet_w18_c \\
      --config.data.manual_dir=/path/to/imagenet_tars
"""
from configs import default

STEPS_PER_EPOCH = 1_281_167 // 128


def get_config():
  config = default.get_config()
  config.model.name = 'hrnet_w18'
  config.model.head = 'cls'
  config.model.num_classes = 1000
  config.data.name = 'imagenet2012'
  config.data.crop_size = (224, 224)
  config.data.eval_resize = 256
  config.global_batch_size = 128
  config.num_train_steps = 100 * STEPS_PER_EPOCH
  config.optimizer.learning_rate = 0.05
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = 1e-4
  # MultiStepLR([30, 60, 90], 0.1) stepped at each epoch's start; 'torch1.0': epochs
  # 30-59 at 0.005 as in the published run (PyTorch 0.4.1), see training/optim.py.
  config.optimizer.schedule = 'multistep'
  config.optimizer.milestone_epochs = (30, 60, 90)
  config.optimizer.steps_per_epoch = STEPS_PER_EPOCH
  config.optimizer.multistep_semantics = 'torch1.0'
  config.optimizer.step_factor = 0.1
  config.loss.class_weights = ()
  config.loss.chunk_images = 0
  config.eval.every_steps = STEPS_PER_EPOCH
  config.eval.global_batch_size = 128
  config.checkpoint.every_steps = STEPS_PER_EPOCH
  return config

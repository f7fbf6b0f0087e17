"""Shared settings of the keypoint configs (not a config itself): the pose recipe of
deep-high-resolution-net.pytorch and the landmark recipe of HRNet-Facial-Landmark-Detection.

The variant configs (coco_pose_*, mpii_pose_*, wflw_w18, 300w_w18, cofw_w18,
aflw_w18, quickstart_pose) call `pose_config` / `landmark_config` and change a few
fields. Optimiser: the official recipes use Adam with MultiStepLR stepped per epoch;
`config.optimizer` below names it (name 'adam', schedule 'step' with boundaries at the
milestone epochs x steps per epoch).
"""
import ml_collections

from configs import default


def _common(config, *, steps_per_epoch: int, epochs: int, milestones, lr: float):
  config.optimizer.name = 'adam'
  config.optimizer.learning_rate = lr
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.999
  config.optimizer.eps = 1e-8
  config.optimizer.momentum = 0.0
  config.optimizer.weight_decay = 0.0     # the yaml's WD is ignored on the Adam path
  config.optimizer.schedule = 'step'
  config.optimizer.step_boundaries = tuple(m * steps_per_epoch for m in milestones)
  config.optimizer.step_factor = 0.1
  config.num_train_steps = epochs * steps_per_epoch
  config.loss.class_weights = ()
  config.loss.chunk_images = 0
  config.eval.every_steps = steps_per_epoch     # validated after every epoch
  config.checkpoint.every_steps = steps_per_epoch
  config.eval.num_pictures = 4
  return config


def pose_config(*, width: int, image_size, heatmap_size, sigma: float, batch: int,
                persons: int, epochs: int = 210, milestones=(170, 200)):
  """HRNet-W<width> top-down pose; `persons` = training people (steps per epoch)."""
  config = default.get_config()
  config.task = 'keypoints'
  config.model.name = f'hrnet_w{width}'
  config.model.head = 'pose'
  config.model.num_classes = 17
  config.data.name = 'coco_keypoints'
  config.data.num_workers = 8
  config.keypoints = ml_collections.ConfigDict()
  k = config.keypoints
  k.image_size = tuple(image_size)        # (W, H)
  k.heatmap_size = tuple(heatmap_size)    # (W, H)
  k.sigma = sigma
  k.scale_factor = 0.35
  k.rotation_factor = 45.0
  k.flip = True
  k.half_body_prob = 0.3
  k.half_body_min_joints = 8
  k.box_padding = 1.25
  # Validation during training uses ground-truth boxes (yaml USE_GT_BBOX true); the
  # published numbers use the person detections (--config.keypoints.use_gt_boxes=False).
  k.use_gt_boxes = True
  k.image_thre = 0.0
  k.in_vis_thre = 0.2
  k.oks_thre = 0.9
  k.flip_test = True
  k.shift_heatmap = True
  k.post_process = True
  # None: from the dataset registry / COCO's skeleton; set for your own skeleton.
  k.flip_pairs = ml_collections.config_dict.placeholder(tuple)
  k.upper_body = ml_collections.config_dict.placeholder(tuple)
  k.oks_sigmas = ml_collections.config_dict.placeholder(tuple)
  config.global_batch_size = batch
  config.eval.global_batch_size = 128
  return _common(config, steps_per_epoch=persons // batch, epochs=epochs,
                 milestones=milestones, lr=1e-3)


def landmark_config(*, data_name: str, num_landmarks: int, sigma: float, train_faces: int,
                    lr: float = 1e-4):
  """HRNetV2-W18 facial landmarks, 60 epochs, batch 16, drops at epochs 30 and 50."""
  config = default.get_config()
  config.task = 'landmarks'
  config.model.name = 'hrnet_w18'
  config.model.head = 'landmark'
  config.model.num_classes = num_landmarks
  config.data.name = data_name
  config.data.num_workers = 4
  config.landmarks = ml_collections.ConfigDict()
  k = config.landmarks
  k.image_size = (256, 256)
  k.heatmap_size = (64, 64)
  k.sigma = sigma
  k.scale_factor = 0.25
  k.rotation_factor = 30.0
  k.flip = True
  config.global_batch_size = 16
  config.eval.global_batch_size = 8
  return _common(config, steps_per_epoch=train_faces // 16, epochs=60, milestones=(30, 50),
                 lr=lr)

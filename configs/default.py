"""Defaults shared by every config: HRNetV2-W48 on Cityscapes, the `pytorch-v1.1` recipe.

Variant configs import this and override a few fields. Every field here is read by the
code; recipes (learning rate, crop, class weights) live in configs, never in code.

Run:
  python train.py --config=configs/default.py --workdir=/tmp/hrnet-default
"""
import ml_collections
from ml_collections import config_dict

# Cityscapes class weights of the official `pytorch-v1.1` code (always applied there).
CITYSCAPES_CLASS_WEIGHTS = (0.8373, 0.918, 0.866, 1.0345, 1.0166, 0.9969, 0.9754, 1.0489,
                            0.8786, 1.0023, 0.9539, 0.9843, 1.1116, 0.9037, 1.0865, 1.0955,
                            1.0865, 1.1529, 1.0507)


def get_config():
  config = ml_collections.ConfigDict()

  # --- task: a module of hrnet_jax/tasks/ ('segmentation', 'classification') or a
  # module path of your own (docs/tasks.md); None = the dataset's task in the registry.
  config.task = config_dict.placeholder(str)

  # --- model: arguments of hrnet_jax.create_model -------------------------------
  config.model = ml_collections.ConfigDict()
  config.model.name = 'hrnet_w48'
  config.model.head = 'seg'
  config.model.num_classes = 19
  # None = the default of the head's family (see hrnet_jax.models.FAMILY_DEFAULTS).
  config.model.upsample = config_dict.placeholder(str)        # 'nearest' | 'bilinear'
  config.model.align_corners = config_dict.placeholder(bool)
  config.model.bn_momentum = config_dict.placeholder(float)   # PyTorch convention
  config.model.dtype = 'float32'          # compute dtype; 'bfloat16' on accelerators
  config.model.param_dtype = 'float32'
  config.model.remat = False              # rematerialise each HRNet module in backward

  # --- initialisation ----------------------------------------------------------
  # A converted checkpoint directory (python -m hrnet_jax.convert), e.g. of
  # hrnetv2_w48_imagenet_pretrained.pth; None = random init as the official code.
  config.init_checkpoint = config_dict.placeholder(str)

  # --- data --------------------------------------------------------------------
  config.data = ml_collections.ConfigDict()
  config.data.name = 'cityscapes'         # key of hrnet_jax.data's dataset registry
  config.data.data_dir = config_dict.placeholder(str)    # TFDS data_dir
  config.data.manual_dir = config_dict.placeholder(str)  # where the downloaded zips are
  # data.name='folder' / 'image_folder': your own files (docs/custom_data.md).
  config.data.root = config_dict.placeholder(str)        # the folder
  config.data.classes = config_dict.placeholder(str)     # None = <root>/classes.txt
  config.data.val_percent = 20           # share of train used as val if there is no val
  config.data.train_split = 'train'
  config.data.eval_split = 'validation'
  config.data.crop_size = (512, 1024)     # (H, W)
  config.data.base_size = 2048            # long side at scale 1
  config.data.scale_factor = 16           # s = 0.5 + randint(0, scale_factor) / 10
  config.data.multi_scale = True
  config.data.flip = True
  config.data.ignore_label = 255
  config.data.num_workers = 2             # grain worker processes per host
  config.data.max_eval_examples = -1      # -1 = the whole split
  # Evaluation batches are padded (bottom/right) to this (H, W) and carry each image's true
  # 'height'/'width'; None = the dataset's fixed image size (Cityscapes, hrnet_synthetic).
  # Needed for datasets of varying sizes: e.g. (512, 512) PASCAL-Context, LIP.
  config.data.eval_pad_size = config_dict.placeholder(tuple)
  config.data.eval_resize = 256           # classification eval: short side, then crop_size

  # --- optimisation ------------------------------------------------------------
  config.global_batch_size = 12           # 4 GPUs x 3 in the official run
  config.num_train_steps = 119_548        # 484 epochs of 2975 images, drop_last
  config.grad_accum_steps = 1
  # Schedules and groups as the official loops step them: hrnet_jax/training/optim.py.
  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = 'sgd'           # 'sgd' | 'adam' (pose and landmark recipes)
  config.optimizer.learning_rate = 0.01
  config.optimizer.momentum = 0.9         # sgd
  config.optimizer.nesterov = False       # sgd
  config.optimizer.b1 = 0.9               # adam
  config.optimizer.b2 = 0.999             # adam
  config.optimizer.eps = 1e-8             # adam
  config.optimizer.weight_decay = 5e-4    # coupled: added to the gradient, as torch
  # 'poly': lr (1 - (it - 1)/N)^power, it >= 1 (adjust_learning_rate after the step);
  # 'multistep': MultiStepLR stepped at each epoch's start; 'step': step_boundaries.
  config.optimizer.schedule = 'poly'
  config.optimizer.poly_power = 0.9
  config.optimizer.warmup_steps = 0       # no official recipe warms up
  config.optimizer.milestone_epochs = ()  # 'multistep': LR_STEP of the yaml
  config.optimizer.steps_per_epoch = 0    # 'multistep': updates per epoch
  # 'torch1.0': drops at the start of each milestone epoch (the published runs);
  # 'torch1.1': one epoch early (the unchanged official loop on PyTorch >= 1.1).
  config.optimizer.multistep_semantics = 'torch1.0'
  config.optimizer.step_boundaries = ()   # 'step': updates where lr *= step_factor
  config.optimizer.step_factor = 0.1
  # Parameter groups: official PyTorch names containing one of these keywords train at
  # lr x nonbackbone_mult (the OCR yamls' NONBACKBONE_KEYWORDS / NONBACKBONE_MULT).
  config.optimizer.nonbackbone_keywords = ()
  config.optimizer.nonbackbone_mult = 10.0
  # Fine-tuning: the backbone's lr multiplier, or no update at all (BN stats still move).
  config.optimizer.backbone_lr_mult = 1.0
  config.optimizer.freeze_backbone = False

  # --- loss --------------------------------------------------------------------
  config.loss = ml_collections.ConfigDict()
  config.loss.class_weights = CITYSCAPES_CLASS_WEIGHTS   # () = unweighted
  config.loss.ohem = False
  config.loss.ohem_thresh = 0.9
  config.loss.ohem_min_kept = 131072
  config.loss.aux_weight = 0.4            # OCR: 0.4 * aux + 1.0 * final
  config.loss.label_smoothing = 0.0       # classification only
  # The official trainers compute the loss per GPU (3 images here) and average the GPU
  # losses; the weighted mean and the OHEM threshold pool pixels of this many images.
  # 0 = pool the whole (micro-)batch.
  config.loss.chunk_images = 3

  # --- evaluation --------------------------------------------------------------
  config.eval = ml_collections.ConfigDict()
  config.eval.every_steps = 5000          # 0 = only after the last step, -1 = never
  config.eval.global_batch_size = 8
  config.eval.mode = 'whole'              # 'whole' | 'sliding'
  config.eval.crop_size = (1024, 2048)    # sliding-window size (H, W)
  config.eval.stride_rate = 2.0 / 3.0     # sliding stride = crop * stride_rate
  # 'border': the last window shifted to end at the image border, no padding (the
  # Cityscapes code, whose stride_rate is 1.0); 'pad': windows on the stride grid,
  # the last ones padded with black to the crop (the base code: PASCAL-Context, LIP,
  # ADE20K). See hrnet_jax/evaluation/inference.py.
  config.eval.window_layout = 'border'
  # (H, W): resize every uint8 eval image to this size first (cv2 INTER_LINEAR) and
  # upsample the prediction back to the label size, as the official LIP testval does
  # with (473, 473). None = test at the image's own size.
  config.eval.resize_input = config_dict.placeholder(tuple)
  # Images of varying size (data.eval_pad_size set): True = fixed-shape programs, so
  # compilations depend on the scales, not on the number of distinct sizes; exact but
  # where the network sees a whole image ('whole' mode, 'border' at scales <= 1): it
  # sees it padded with black to eval_pad_size, which changes predictions within its
  # reach of the border. False = each image at its true size, one compilation per
  # size. See hrnet_jax/evaluation/bucketed.py.
  config.eval.size_buckets = True
  config.eval.scales = (1.0,)             # (0.5, 0.75, 1.0, 1.25, 1.5, 1.75) for ms
  config.eval.flip = False
  config.eval.num_pictures = 4            # prediction pictures written per evaluation

  # --- mesh, checkpoints, logging ---------------------------------------------
  config.mesh = ml_collections.ConfigDict()
  config.mesh.fsdp = 1                    # devices per parameter shard; data axis = rest
  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.every_steps = 1000
  config.checkpoint.keep = 3
  config.checkpoint.keep_best = True      # also keep the best checkpoint by mIoU
  config.checkpoint.async_save = True     # write while training continues
  config.log_every_steps = 50             # train/loss is the mean over these steps
  config.profile_steps = 0                # > 0: a profiler trace of this many steps
  config.seed = 0
  return config

"""Dataset registry: what every part of the project needs to know about a dataset.

`get_dataset_info(name)` is cheap (no TensorFlow, no file access) so trainers, evaluators
and the prediction CLI can ask for class names, palettes and label mappings freely.
"""
from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np

from hrnet_jax.data.errors import DataError

IGNORE_LABEL = 255

CITYSCAPES_CLASSES = (
    'road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light',
    'traffic sign', 'vegetation', 'terrain', 'sky', 'person', 'rider', 'car', 'truck',
    'bus', 'train', 'motorcycle', 'bicycle')
# The official Cityscapes colours, in trainId order.
CITYSCAPES_PALETTE = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32))
# labelId -> trainId of the Cityscapes scripts; every other labelId is ignored.
CITYSCAPES_LABEL_TO_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
    25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}

PASCAL_CONTEXT_59_CLASSES = (
    'aeroplane', 'bag', 'bed', 'bedclothes', 'bench', 'bicycle', 'bird', 'boat', 'book',
    'bottle', 'building', 'bus', 'cabinet', 'car', 'cat', 'ceiling', 'chair', 'cloth',
    'computer', 'cow', 'cup', 'curtain', 'dog', 'door', 'fence', 'floor', 'flower', 'food',
    'grass', 'ground', 'horse', 'keyboard', 'light', 'motorbike', 'mountain', 'mouse',
    'person', 'plate', 'platform', 'pottedplant', 'road', 'rock', 'sheep', 'shelves',
    'sidewalk', 'sign', 'sky', 'snow', 'sofa', 'table', 'track', 'train', 'tree', 'truck',
    'tvmonitor', 'wall', 'water', 'window', 'wood')
# Ids of the 59 classes in the 459-class PASCAL-Context release (labels.txt), sorted: the
# i-th entry becomes class i + 1 of the 60-class labelling (0 = background, which also
# absorbs the 400 rare classes).
PASCAL_CONTEXT_459_IDS = (
    2, 9, 18, 19, 22, 23, 25, 31, 33, 34, 44, 45, 46, 59, 65, 68, 72, 80, 85, 98, 104, 105,
    113, 115, 144, 158, 159, 162, 187, 189, 207, 220, 232, 258, 259, 260, 284, 295, 296,
    308, 324, 326, 347, 349, 354, 355, 360, 366, 368, 397, 415, 416, 420, 424, 427, 440,
    445, 454, 458)

LIP_CLASSES = (
    'background', 'hat', 'hair', 'glove', 'sunglasses', 'upper-clothes', 'dress', 'coat',
    'socks', 'pants', 'jumpsuits', 'scarf', 'skirt', 'face', 'left-arm', 'right-arm',
    'left-leg', 'right-leg', 'left-shoe', 'right-shoe')
# Left/right classes swapped by a horizontal flip (official LIP training and flip test).
LIP_FLIP_PAIRS = ((14, 15), (16, 17), (18, 19))

ADE20K_CLASSES = (
    'wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road', 'bed', 'windowpane',
    'grass', 'cabinet', 'sidewalk', 'person', 'earth', 'door', 'table', 'mountain', 'plant',
    'curtain', 'chair', 'car', 'water', 'painting', 'sofa', 'shelf', 'house', 'sea',
    'mirror', 'rug', 'field', 'armchair', 'seat', 'fence', 'desk', 'rock', 'wardrobe',
    'lamp', 'bathtub', 'railing', 'cushion', 'base', 'box', 'column', 'signboard',
    'chest of drawers', 'counter', 'sand', 'sink', 'skyscraper', 'fireplace', 'refrigerator',
    'grandstand', 'path', 'stairs', 'runway', 'case', 'pool table', 'pillow', 'screen door',
    'stairway', 'river', 'bridge', 'bookcase', 'blind', 'coffee table', 'toilet', 'flower',
    'book', 'hill', 'bench', 'countertop', 'stove', 'palm', 'kitchen island', 'computer',
    'swivel chair', 'boat', 'bar', 'arcade machine', 'hovel', 'bus', 'towel', 'light',
    'truck', 'tower', 'chandelier', 'awning', 'streetlight', 'booth', 'television receiver',
    'airplane', 'dirt track', 'apparel', 'pole', 'land', 'bannister', 'escalator', 'ottoman',
    'bottle', 'buffet', 'poster', 'stage', 'van', 'ship', 'fountain', 'conveyer belt',
    'canopy', 'washer', 'plaything', 'swimming pool', 'stool', 'barrel', 'basket',
    'waterfall', 'tent', 'bag', 'minibike', 'cradle', 'oven', 'ball', 'food', 'step', 'tank',
    'trade name', 'microwave', 'pot', 'animal', 'bicycle', 'lake', 'dishwasher', 'screen',
    'blanket', 'sculpture', 'hood', 'sconce', 'vase', 'traffic light', 'tray', 'ashcan',
    'fan', 'pier', 'crt screen', 'plate', 'monitor', 'bulletin board', 'shower', 'radiator',
    'glass', 'clock', 'flag')


@dataclasses.dataclass(frozen=True)
class FolderSpec:
  """Where a dataset made from the user's own files comes from (config.data.root etc.)."""
  root: str
  classes: str | None = None      # class file; None = classes.txt in root
  val_percent: int = 20           # share of train carved out as validation when no val split


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """Static facts about one dataset of the registry.

  Attributes:
    name: registry key (`config.data.name`).
    tfds_name: TFDS name, with config (`cityscapes/semantic_segmentation`).
    task: 'segmentation' or 'classification'.
    num_classes: classes the model predicts.
    class_names: one name per class.
    ignore_label: label value excluded from loss and metrics.
    palette: (num_classes, 3) uint8 colours for visualisation.
    label_to_train_id: (256,) uint8 lookup table from stored label values to training
      ids (ignore_label where not trained), or None when stored labels are already ids.
    image_key, label_key, id_key: feature names in the TFDS dataset.
    splits: our split names ('train', 'validation', 'test') -> TFDS split names.
    flip_pairs: classes swapped by a horizontal flip.
    lip_order: the official LIP order of training ops: flip, resize to the crop size,
      then multi-scale crop (the other datasets: multi-scale crop, then flip).
    builder_module: module that registers our own TFDS builder (None = TFDS catalog).
    manual_files: files the user must download into the manual directory.
    download_url: where to get them.
    user_folder: the user's folder the dataset is built from (data.name='folder').
  """
  name: str
  tfds_name: str
  task: str
  num_classes: int
  class_names: tuple[str, ...]
  ignore_label: int = IGNORE_LABEL
  palette: np.ndarray | None = None
  label_to_train_id: np.ndarray | None = None
  image_key: str = 'image'
  label_key: str = 'label'
  id_key: str | None = 'image_id'
  splits: tuple[tuple[str, str], ...] = (('train', 'train'), ('validation', 'validation'))
  flip_pairs: tuple[tuple[int, int], ...] = ()
  lip_order: bool = False
  builder_module: str | None = None
  manual_files: tuple[str, ...] = ()
  download_url: str = ''
  user_folder: FolderSpec | None = None

  def tfds_split(self, split: str) -> str:
    """Maps our split name (or a TFDS slice such as 'train[:10]') to the TFDS one."""
    base, bracket, rest = split.partition('[')
    mapping = dict(self.splits)
    if base not in mapping:
      raise DataError(f'dataset {self.name!r} has no split {base!r}; '
                      f'choose one of {sorted(mapping)}')
    return mapping[base] + bracket + rest


def _lut(mapping: dict[int, int], default: int = IGNORE_LABEL) -> np.ndarray:
  lut = np.full((256,), default, np.uint8)
  for src, dst in mapping.items():
    lut[src] = dst
  return lut


def _voc_palette(n: int) -> np.ndarray:
  """The PASCAL VOC colour map (bit-interleaved index colours), also used for LIP/ADE."""
  palette = np.zeros((n, 3), np.uint8)
  for i in range(n):
    c, r, g, b = i, 0, 0, 0
    for shift in range(7, -1, -1):
      r |= (c & 1) << shift
      g |= ((c >> 1) & 1) << shift
      b |= ((c >> 2) & 1) << shift
      c >>= 3
    palette[i] = (r, g, b)
  return palette


def _imagenet_classes() -> tuple[str, ...]:
  # The WordNet ids shipped with TFDS, in label order; read as a plain file so that the
  # registry stays free of TensorFlow.
  import tensorflow_datasets  # pylint: disable=g-import-not-at-top
  path = os.path.join(os.path.dirname(tensorflow_datasets.__file__), 'datasets',
                      'imagenet2012', 'labels.txt')
  with open(path) as f:
    return tuple(line.strip() for line in f if line.strip())


_CITYSCAPES_URL = 'https://www.cityscapes-dataset.com/downloads/ (free registration)'


@functools.cache
def _registry() -> dict[str, DatasetInfo]:
  cityscapes_palette = np.asarray(CITYSCAPES_PALETTE, np.uint8)
  context_lut_59 = _lut({k: k - 1 for k in range(1, 60)})   # background -> ignore
  context_lut_60 = _lut({k: k for k in range(60)})
  ade_lut = _lut({k: k - 1 for k in range(1, 151)})          # 0 ("other") -> ignore
  infos = [
      DatasetInfo(
          name='hrnet_synthetic', tfds_name='hrnet_synthetic/default',
          task='segmentation', num_classes=19, class_names=CITYSCAPES_CLASSES,
          palette=cityscapes_palette, builder_module='hrnet_jax.data.synthetic'),
      DatasetInfo(
          name='hrnet_synthetic_tiny', tfds_name='hrnet_synthetic/tiny',
          task='segmentation', num_classes=19, class_names=CITYSCAPES_CLASSES,
          palette=cityscapes_palette, builder_module='hrnet_jax.data.synthetic'),
      DatasetInfo(
          name='cityscapes', tfds_name='cityscapes/semantic_segmentation',
          task='segmentation', num_classes=19, class_names=CITYSCAPES_CLASSES,
          palette=cityscapes_palette,
          label_to_train_id=_lut(CITYSCAPES_LABEL_TO_TRAIN_ID),
          image_key='image_left', label_key='segmentation_label', id_key='image_id',
          splits=(('train', 'train'), ('validation', 'validation'), ('test', 'test')),
          manual_files=('leftImg8bit_trainvaltest.zip', 'gtFine_trainvaltest.zip'),
          download_url=_CITYSCAPES_URL),
      DatasetInfo(
          name='pascal_context_59', tfds_name='pascal_context',
          task='segmentation', num_classes=59, class_names=PASCAL_CONTEXT_59_CLASSES,
          palette=_voc_palette(60)[1:], label_to_train_id=context_lut_59,
          builder_module='hrnet_jax.data.pascal_context',
          manual_files=('VOCtrainval_03-May-2010.tar', 'trainval.tar.gz'),
          download_url=('http://host.robots.ox.ac.uk/pascal/VOC/voc2010/ (images) and '
                        'https://cs.stanford.edu/~roozbeh/pascal-context/ (labels)')),
      DatasetInfo(
          name='pascal_context_60', tfds_name='pascal_context',
          task='segmentation', num_classes=60,
          class_names=('background',) + PASCAL_CONTEXT_59_CLASSES,
          palette=_voc_palette(60), label_to_train_id=context_lut_60,
          builder_module='hrnet_jax.data.pascal_context',
          manual_files=('VOCtrainval_03-May-2010.tar', 'trainval.tar.gz'),
          download_url=('http://host.robots.ox.ac.uk/pascal/VOC/voc2010/ (images) and '
                        'https://cs.stanford.edu/~roozbeh/pascal-context/ (labels)')),
      DatasetInfo(
          name='lip', tfds_name='lip', task='segmentation', num_classes=20,
          class_names=LIP_CLASSES, palette=_voc_palette(20),
          flip_pairs=LIP_FLIP_PAIRS, lip_order=True, builder_module='hrnet_jax.data.lip',
          manual_files=('TrainVal_images.zip', 'TrainVal_parsing_annotations.zip'),
          download_url='https://sysu-hcp.net/lip/overview.php (Single Person, Google Drive)'),
      DatasetInfo(
          name='ade20k', tfds_name='ade20k', task='segmentation', num_classes=150,
          class_names=ADE20K_CLASSES, palette=_voc_palette(151)[1:],
          label_to_train_id=ade_lut, builder_module='hrnet_jax.data.ade20k',
          manual_files=('ADEChallengeData2016.zip',),
          download_url='http://sceneparsing.csail.mit.edu/ (ADEChallengeData2016.zip)'),
      DatasetInfo(
          name='imagenet2012', tfds_name='imagenet2012', task='classification',
          num_classes=1000, class_names=(), id_key='file_name',
          manual_files=('ILSVRC2012_img_train.tar', 'ILSVRC2012_img_val.tar'),
          download_url='https://image-net.org/download-images (registration)'),
  ]
  from hrnet_jax.data import keypoint_datasets  # pylint: disable=g-import-not-at-top
  infos += keypoint_datasets.registry_entries(DatasetInfo)
  return {info.name: info for info in infos}


# Datasets built from the user's own folder (config.data.root): name -> the module whose
# `folder_info(FolderSpec)` reads the folder's classes and splits (no TensorFlow).
USER_FOLDER_MODULES = {'folder': 'hrnet_jax.data.folder_layout',
                       'image_folder': 'hrnet_jax.data.image_folder'}


def dataset_names() -> tuple[str, ...]:
  return tuple(sorted((*_registry(), *USER_FOLDER_MODULES)))


def dataset_info(data_config) -> DatasetInfo:
  """The entry for `config.data`: `get_dataset_info(config.data.name)`, or for a folder of
  the user's own files (data.name 'folder' / 'image_folder'), one read from data.root."""
  name = data_config.name
  if name not in USER_FOLDER_MODULES:
    return get_dataset_info(name)
  root = data_config.get('root', None)
  if not root:
    raise DataError(f'config.data.name={name!r} needs config.data.root, the folder of your '
                    'images (see docs/custom_data.md)')
  root = os.path.abspath(os.path.expanduser(root))
  if not os.path.isdir(root):
    raise DataError(f'config.data.root={root} is not a directory')
  spec = FolderSpec(root=root, classes=data_config.get('classes', None) or None,
                    val_percent=int(data_config.get('val_percent', 20)))
  import importlib  # pylint: disable=g-import-not-at-top
  return importlib.import_module(USER_FOLDER_MODULES[name]).folder_info(spec)


def get_dataset_info(name: str) -> DatasetInfo:
  """Returns the registry entry of `name` (`config.data.name`)."""
  registry = _registry()
  if name in USER_FOLDER_MODULES:
    raise DataError(f'dataset {name!r} is read from config.data.root: look it up with '
                    'hrnet_jax.data.registry.dataset_info(config.data)')
  if name not in registry:
    raise DataError(f'unknown dataset {name!r} (config.data.name); known: '
                    f'{", ".join(dataset_names())}')
  info = registry[name]
  if info.task == 'classification' and not info.class_names:
    info = dataclasses.replace(info, class_names=_imagenet_classes())
  return info

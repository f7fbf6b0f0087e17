"""Registry entries and skeleton facts of the keypoint datasets (pose and face).

Pure Python (the registry imports it): no numpy, OpenCV or TensorFlow.

`DatasetInfo.num_classes` is the joint / landmark count, `class_names` the joint names and
`flip_pairs` the left/right pairs swapped by a horizontal flip. The rest of each
skeleton (upper-body joints for half-body augmentation, OKS sigmas) is in `SKELETONS`.
"""
from __future__ import annotations

import dataclasses


# COCO's 17 joints: 0 nose, 1/2 eyes, 3/4 ears, 5/6 shoulders, 7/8 elbows, 9/10 wrists,
# 11/12 hips, 13/14 knees, 15/16 ankles (left first).
COCO_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
COCO_UPPER_BODY = tuple(range(11))
MPII_FLIP_PAIRS = ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13))
MPII_UPPER_BODY = (7, 8, 9, 10, 11, 12, 13, 14, 15)
# MATCHED_PARTS of the official code made 0-based (WFLW's were already 0-based).
_ONE_BASED = {
    '300w': ((1, 17), (2, 16), (3, 15), (4, 14), (5, 13), (6, 12), (7, 11), (8, 10),
             (18, 27), (19, 26), (20, 25), (21, 24), (22, 23), (32, 36), (33, 35),
             (37, 46), (38, 45), (39, 44), (40, 43), (41, 48), (42, 47), (49, 55), (50, 54),
             (51, 53), (62, 64), (61, 65), (68, 66), (59, 57), (60, 56)),
    'aflw': ((1, 6), (2, 5), (3, 4), (7, 12), (8, 11), (9, 10), (13, 15), (16, 18)),
    'cofw': ((1, 2), (5, 7), (3, 4), (6, 8), (9, 10), (11, 12), (13, 15), (17, 18), (14, 16),
             (19, 20), (23, 24)),
}
LANDMARK_FLIP_PAIRS = {name: tuple((a - 1, b - 1) for a, b in pairs)
                       for name, pairs in _ONE_BASED.items()}
LANDMARK_FLIP_PAIRS['wflw'] = (
    (0, 32), (1, 31), (2, 30), (3, 29), (4, 28), (5, 27), (6, 26), (7, 25), (8, 24), (9, 23),
    (10, 22), (11, 21), (12, 20), (13, 19), (14, 18), (15, 17), (33, 46), (34, 45), (35, 44),
    (36, 43), (37, 42), (38, 50), (39, 49), (40, 48), (41, 47), (60, 72), (61, 71), (62, 70),
    (63, 69), (64, 68), (65, 75), (66, 74), (67, 73), (55, 59), (56, 58), (76, 82), (77, 81),
    (78, 80), (87, 83), (86, 84), (88, 92), (89, 91), (95, 93), (96, 97))
NUM_LANDMARKS = {'wflw': 98, '300w': 68, 'cofw': 29, 'aflw': 19}

COCO_JOINTS = ('nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder',
               'right_shoulder', 'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist',
               'left_hip', 'right_hip', 'left_knee', 'right_knee', 'left_ankle', 'right_ankle')
MPII_JOINTS = ('r_ankle', 'r_knee', 'r_hip', 'l_hip', 'l_knee', 'l_ankle', 'pelvis', 'thorax',
               'upper_neck', 'head_top', 'r_wrist', 'r_elbow', 'r_shoulder', 'l_shoulder',
               'l_elbow', 'l_wrist')
COCO_OKS_SIGMAS = (.026, .025, .025, .035, .035, .079, .079, .072, .072, .062, .062, .107,
                   .107, .087, .087, .089, .089)


@dataclasses.dataclass(frozen=True)
class Skeleton:
  upper_body: tuple[int, ...] = ()
  oks_sigmas: tuple[float, ...] = ()


SKELETONS = {
    'coco': Skeleton(COCO_UPPER_BODY, COCO_OKS_SIGMAS),
    'mpii': Skeleton(MPII_UPPER_BODY, ()),
}

_COCO_URL = 'https://cocodataset.org/#download'
_HRNET_POSE_DATA = ('https://github.com/leoxiaobin/deep-high-resolution-net.pytorch '
                    '(Data preparation: annotation jsons and person detections)')
_FACE_URL = ('https://github.com/HRNet/HRNet-Facial-Landmark-Detection (Data: the csv '
             'annotation files) and each dataset\'s own site for the images')


def registry_entries(DatasetInfo):  # pylint: disable=invalid-name
  """The keypoint entries of `hrnet_jax.data.registry` (DatasetInfo passed in to keep the
  import one-way)."""
  coco = dict(task='keypoints', num_classes=17, class_names=COCO_JOINTS,
              flip_pairs=COCO_FLIP_PAIRS, id_key='image_id')
  infos = [
      DatasetInfo(name='hrnet_synthetic_pose', tfds_name='hrnet_synthetic_pose/default',
                  builder_module='hrnet_jax.data.synthetic_keypoints', **coco),
      DatasetInfo(name='hrnet_synthetic_pose_tiny', tfds_name='hrnet_synthetic_pose/tiny',
                  builder_module='hrnet_jax.data.synthetic_keypoints', **coco),
      DatasetInfo(name='coco_keypoints', tfds_name='coco_keypoints/coco2017',
                  builder_module='hrnet_jax.data.coco_keypoints',
                  manual_files=('annotations_trainval2017.zip', 'train2017.zip',
                                'val2017.zip'),
                  download_url=f'{_COCO_URL}; detections: {_HRNET_POSE_DATA}', **coco),
      # Your own COCO-format keypoints: joints, names and flip pairs come from the config
      # (config.keypoints.*); the entry's 17 are COCO's defaults.
      DatasetInfo(name='coco_format_keypoints', tfds_name='coco_keypoints/custom',
                  builder_module='hrnet_jax.data.coco_keypoints',
                  manual_files=('keypoints_train.json', 'keypoints_val.json',
                                'images_train.zip', 'images_val.zip'),
                  download_url='your own files (docs/keypoints.md)', **coco),
      DatasetInfo(name='mpii_pose', tfds_name='mpii_pose', task='keypoints', num_classes=16,
                  class_names=MPII_JOINTS, flip_pairs=MPII_FLIP_PAIRS, id_key='file_name',
                  builder_module='hrnet_jax.data.mpii',
                  manual_files=('mpii_human_pose_v1.tar.gz', 'train.json', 'valid.json',
                                'gt_valid.mat'),
                  download_url=f'http://human-pose.mpi-inf.mpg.de/ (images); {_HRNET_POSE_DATA}'),
  ]
  face_splits = {
      'wflw': (('validation', 'test'),) + tuple(
          (s, s) for s in ('test_largepose', 'test_expression', 'test_illumination',
                           'test_makeup', 'test_occlusion', 'test_blur')),
      '300w': (('validation', 'valid'), ('valid_common', 'valid_common'),
               ('valid_challenge', 'valid_challenge'), ('test', 'test')),
      'aflw': (('validation', 'test'), ('test_frontal', 'test_frontal')),
      'cofw': (('validation', 'test'),),
  }
  archives = {'wflw': 'WFLW_images.tar.gz', '300w': '300w_images.zip',
              'aflw': 'aflw_images.zip'}
  for face, extra in face_splits.items():
    if face == 'cofw':
      files = ('COFW_train_color.mat', 'COFW_test_color.mat')
    else:
      files = (archives[face], f'face_landmarks_{face}_train.csv',
               f'face_landmarks_{face}_{extra[0][1]}.csv')
    infos.append(DatasetInfo(
        # Registry names are identifiers: '300w' is 'face300w' (its config is configs/300w_w18.py).
        name='face300w' if face == '300w' else face, tfds_name=f'face_landmarks/{face}',
        task='landmarks', num_classes=NUM_LANDMARKS[face],
        class_names=tuple(f'landmark_{i}' for i in range(NUM_LANDMARKS[face])),
        flip_pairs=LANDMARK_FLIP_PAIRS[face], id_key='file_name',
        splits=(('train', 'train'),) + extra, builder_module='hrnet_jax.data.face_landmarks',
        manual_files=files, download_url=_FACE_URL))
  return infos

"""Pose and landmark transforms, targets and decoding against line-by-line rewrites of
the official functions (deep-high-resolution-net.pytorch 6f69e46 lib/utils/transforms.py,
lib/dataset/JointsDataset.py, coco.py, lib/core/inference.py, function.py;
HRNet-Facial-Landmark-Detection f776dbe lib/utils/transforms.py, lib/core/evaluation.py),
on random inputs, to 1e-5."""
import math

import cv2
import numpy as np
import pytest
import torch

from hrnet_jax.data import keypoint_transforms as kt
from hrnet_jax.data import landmark_transforms as lt
from hrnet_jax.tasks import keypoint_decode as kd

COCO_PAIRS = [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14], [15, 16]]


# ----------------------------------------------------------------------------
# The official functions, rewritten line by line (the reference).
# ----------------------------------------------------------------------------
def ref_get_dir(src_point, rot_rad):
  sn, cs = np.sin(rot_rad), np.cos(rot_rad)
  return [src_point[0] * cs - src_point[1] * sn, src_point[0] * sn + src_point[1] * cs]


def ref_get_3rd_point(a, b, dtype=np.float32):
  direct = a - b
  return b + np.array([-direct[1], direct[0]], dtype=dtype)


def ref_get_affine_transform(center, scale, rot, output_size, inv=0, dtype=np.float32):
  """`dtype` float64 keeps the official construction but not its float32 rounding."""
  if dtype == np.float64:
    center, scale = np.asarray(center, dtype), np.asarray(scale, dtype)
  scale_tmp = scale * 200.0
  src_w = scale_tmp[0]
  dst_w, dst_h = output_size[0], output_size[1]
  rot_rad = np.pi * rot / 180
  src_dir = ref_get_dir([0, src_w * -0.5], rot_rad)
  dst_dir = np.array([0, dst_w * -0.5], dtype)
  src = np.zeros((3, 2), dtype=dtype)
  dst = np.zeros((3, 2), dtype=dtype)
  src[0, :] = center
  src[1, :] = center + src_dir
  dst[0, :] = [dst_w * 0.5, dst_h * 0.5]
  dst[1, :] = np.array([dst_w * 0.5, dst_h * 0.5]) + dst_dir
  src[2:, :] = ref_get_3rd_point(src[0, :], src[1, :], dtype)
  dst[2:, :] = ref_get_3rd_point(dst[0, :], dst[1, :], dtype)
  if dtype == np.float64:   # cv2.getAffineTransform takes float32 only: solve directly
    a, b = (dst, src) if inv else (src, dst)
    return np.linalg.solve(np.c_[a, np.ones(3)], b).T
  if inv:
    return cv2.getAffineTransform(np.float32(dst), np.float32(src))
  return cv2.getAffineTransform(np.float32(src), np.float32(dst))


def ref_affine_transform(pt, t):
  return np.dot(t, np.array([pt[0], pt[1], 1.]).T)[:2]


def ref_fliplr_joints(joints, joints_vis, width, matched_parts):
  joints, joints_vis = joints.copy(), joints_vis.copy()
  joints[:, 0] = width - joints[:, 0] - 1
  for pair in matched_parts:
    joints[pair[0], :], joints[pair[1], :] = joints[pair[1], :], joints[pair[0], :].copy()
    joints_vis[pair[0], :], joints_vis[pair[1], :] = \
        joints_vis[pair[1], :], joints_vis[pair[0], :].copy()
  return joints * joints_vis, joints_vis


def ref_xywh2cs(x, y, w, h, aspect_ratio):
  center = np.zeros((2), dtype=np.float32)
  center[0] = x + w * 0.5
  center[1] = y + h * 0.5
  if w > aspect_ratio * h:
    h = w * 1.0 / aspect_ratio
  elif w < aspect_ratio * h:
    w = h * aspect_ratio
  scale = np.array([w * 1.0 / 200, h * 1.0 / 200], dtype=np.float32)
  if center[0] != -1:
    scale = scale * 1.25
  return center, scale


def ref_half_body(joints, joints_vis, upper_body_ids, aspect_ratio, randn):
  upper_joints, lower_joints = [], []
  for joint_id in range(len(joints)):
    if joints_vis[joint_id][0] > 0:
      if joint_id in upper_body_ids:
        upper_joints.append(joints[joint_id])
      else:
        lower_joints.append(joints[joint_id])
  if randn < 0.5 and len(upper_joints) > 2:
    selected_joints = upper_joints
  else:
    selected_joints = lower_joints if len(lower_joints) > 2 else upper_joints
  if len(selected_joints) < 2:
    return None, None
  selected_joints = np.array(selected_joints, dtype=np.float32)
  center = selected_joints.mean(axis=0)[:2]
  left_top = np.amin(selected_joints, axis=0)
  right_bottom = np.amax(selected_joints, axis=0)
  w = right_bottom[0] - left_top[0]
  h = right_bottom[1] - left_top[1]
  if w > aspect_ratio * h:
    h = w * 1.0 / aspect_ratio
  elif w < aspect_ratio * h:
    w = h * aspect_ratio
  scale = np.array([w * 1.0 / 200, h * 1.0 / 200], dtype=np.float32)
  return center, scale * 1.5


def ref_generate_target(joints, joints_vis, image_size, heatmap_size, sigma):
  num_joints = len(joints)
  target_weight = np.ones((num_joints, 1), dtype=np.float32)
  target_weight[:, 0] = joints_vis[:, 0]
  target = np.zeros((num_joints, heatmap_size[1], heatmap_size[0]), dtype=np.float32)
  tmp_size = sigma * 3
  for joint_id in range(num_joints):
    feat_stride = image_size / heatmap_size
    mu_x = int(joints[joint_id][0] / feat_stride[0] + 0.5)
    mu_y = int(joints[joint_id][1] / feat_stride[1] + 0.5)
    ul = [int(mu_x - tmp_size), int(mu_y - tmp_size)]
    br = [int(mu_x + tmp_size + 1), int(mu_y + tmp_size + 1)]
    if ul[0] >= heatmap_size[0] or ul[1] >= heatmap_size[1] or br[0] < 0 or br[1] < 0:
      target_weight[joint_id] = 0
      continue
    size = 2 * tmp_size + 1
    x = np.arange(0, size, 1, np.float32)
    y = x[:, np.newaxis]
    x0 = y0 = size // 2
    g = np.exp(- ((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma ** 2))
    g_x = max(0, -ul[0]), min(br[0], heatmap_size[0]) - ul[0]
    g_y = max(0, -ul[1]), min(br[1], heatmap_size[1]) - ul[1]
    img_x = max(0, ul[0]), min(br[0], heatmap_size[0])
    img_y = max(0, ul[1]), min(br[1], heatmap_size[1])
    if target_weight[joint_id] > 0.5:
      target[joint_id][img_y[0]:img_y[1], img_x[0]:img_x[1]] = g[g_y[0]:g_y[1], g_x[0]:g_x[1]]
  return target, target_weight


def ref_get_max_preds(batch_heatmaps):
  batch_size, num_joints, _, width = batch_heatmaps.shape
  heatmaps_reshaped = batch_heatmaps.reshape((batch_size, num_joints, -1))
  idx = np.argmax(heatmaps_reshaped, 2)
  maxvals = np.amax(heatmaps_reshaped, 2)
  maxvals = maxvals.reshape((batch_size, num_joints, 1))
  idx = idx.reshape((batch_size, num_joints, 1))
  preds = np.tile(idx, (1, 1, 2)).astype(np.float32)
  preds[:, :, 0] = (preds[:, :, 0]) % width
  preds[:, :, 1] = np.floor((preds[:, :, 1]) / width)
  pred_mask = np.tile(np.greater(maxvals, 0.0), (1, 1, 2)).astype(np.float32)
  preds *= pred_mask
  return preds, maxvals


def ref_transform_preds(coords, center, scale, output_size):
  target_coords = np.zeros(coords.shape)
  trans = ref_get_affine_transform(center, scale, 0, output_size, inv=1)
  for p in range(coords.shape[0]):
    target_coords[p, 0:2] = ref_affine_transform(coords[p, 0:2], trans)
  return target_coords


def ref_get_final_preds(batch_heatmaps, center, scale):
  coords, maxvals = ref_get_max_preds(batch_heatmaps)
  heatmap_height, heatmap_width = batch_heatmaps.shape[2], batch_heatmaps.shape[3]
  for n in range(coords.shape[0]):
    for p in range(coords.shape[1]):
      hm = batch_heatmaps[n][p]
      px = int(math.floor(coords[n][p][0] + 0.5))
      py = int(math.floor(coords[n][p][1] + 0.5))
      if 1 < px < heatmap_width - 1 and 1 < py < heatmap_height - 1:
        diff = np.array([hm[py][px + 1] - hm[py][px - 1], hm[py + 1][px] - hm[py - 1][px]])
        coords[n][p] += np.sign(diff) * .25
  preds = coords.copy()
  for i in range(coords.shape[0]):
    preds[i] = ref_transform_preds(coords[i], center[i], scale[i],
                                   [heatmap_width, heatmap_height])
  return preds, maxvals


def ref_flip_back(output_flipped, matched_parts):
  output_flipped = output_flipped[:, :, :, ::-1].copy()
  for pair in matched_parts:
    tmp = output_flipped[:, pair[0], :, :].copy()
    output_flipped[:, pair[0], :, :] = output_flipped[:, pair[1], :, :]
    output_flipped[:, pair[1], :, :] = tmp
  return output_flipped


# Facial landmark code.
def ref_face_get_transform(center, scale, output_size, rot=0):
  h = 200 * scale
  t = np.zeros((3, 3))
  t[0, 0] = float(output_size[1]) / h
  t[1, 1] = float(output_size[0]) / h
  t[0, 2] = output_size[1] * (-float(center[0]) / h + .5)
  t[1, 2] = output_size[0] * (-float(center[1]) / h + .5)
  t[2, 2] = 1
  if not rot == 0:
    rot = -rot
    rot_mat = np.zeros((3, 3))
    rot_rad = rot * np.pi / 180
    sn, cs = np.sin(rot_rad), np.cos(rot_rad)
    rot_mat[0, :2] = [cs, -sn]
    rot_mat[1, :2] = [sn, cs]
    rot_mat[2, 2] = 1
    t_mat = np.eye(3)
    t_mat[0, 2] = -output_size[1] / 2
    t_mat[1, 2] = -output_size[0] / 2
    t_inv = t_mat.copy()
    t_inv[:2, 2] *= -1
    t = np.dot(t_inv, np.dot(rot_mat, np.dot(t_mat, t)))
  return t


def ref_transform_pixel(pt, center, scale, output_size, invert=0, rot=0):
  t = ref_face_get_transform(center, scale, output_size, rot=rot)
  if invert:
    t = np.linalg.inv(t)
  new_pt = np.array([pt[0] - 1, pt[1] - 1, 1.]).T
  new_pt = np.dot(t, new_pt)
  return new_pt[:2].astype(int) + 1


def ref_face_generate_target(img, pt, sigma):
  tmp_size = sigma * 3
  ul = [int(pt[0] - tmp_size), int(pt[1] - tmp_size)]
  br = [int(pt[0] + tmp_size + 1), int(pt[1] + tmp_size + 1)]
  if ul[0] >= img.shape[1] or ul[1] >= img.shape[0] or br[0] < 0 or br[1] < 0:
    return img
  size = 2 * tmp_size + 1
  x = np.arange(0, size, 1, np.float32)
  y = x[:, np.newaxis]
  x0 = y0 = size // 2
  g = np.exp(- ((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma ** 2))
  g_x = max(0, -ul[0]), min(br[0], img.shape[1]) - ul[0]
  g_y = max(0, -ul[1]), min(br[1], img.shape[0]) - ul[1]
  img_x = max(0, ul[0]), min(br[0], img.shape[1])
  img_y = max(0, ul[1]), min(br[1], img.shape[0])
  img[img_y[0]:img_y[1], img_x[0]:img_x[1]] = g[g_y[0]:g_y[1], g_x[0]:g_x[1]]
  return img


def ref_face_get_preds(scores):
  maxval, idx = torch.max(scores.view(scores.size(0), scores.size(1), -1), 2)
  maxval = maxval.view(scores.size(0), scores.size(1), 1)
  idx = idx.view(scores.size(0), scores.size(1), 1) + 1
  preds = idx.repeat(1, 1, 2).float()
  preds[:, :, 0] = (preds[:, :, 0] - 1) % scores.size(3) + 1
  preds[:, :, 1] = torch.floor((preds[:, :, 1] - 1) / scores.size(3)) + 1
  pred_mask = maxval.gt(0).repeat(1, 1, 2).float()
  preds *= pred_mask
  return preds


def ref_face_decode_preds(output, center, scale, res):
  coords = ref_face_get_preds(output)
  for n in range(coords.size(0)):
    for p in range(coords.size(1)):
      hm = output[n][p]
      px = int(math.floor(coords[n][p][0]))
      py = int(math.floor(coords[n][p][1]))
      if (px > 1) and (px < res[0]) and (py > 1) and (py < res[1]):
        diff = torch.Tensor([hm[py - 1][px] - hm[py - 1][px - 2],
                             hm[py][px - 1] - hm[py - 2][px - 1]])
        coords[n][p] += diff.sign() * .25
  coords += 0.5
  preds = coords.clone()
  for i in range(coords.size(0)):
    for p in range(coords.size(1)):
      preds[i, p, 0:2] = torch.tensor(ref_transform_pixel(coords[i, p, 0:2], center[i],
                                                          scale[i], res, 1, 0))
  return preds


# ----------------------------------------------------------------------------
# Tests.
# ----------------------------------------------------------------------------
def _random_person(rng, num=17):
  joints = np.zeros((num, 3))
  joints[:, :2] = rng.uniform(-20, 640, (num, 2))
  vis = np.zeros((num, 3))
  vis[:, :2] = rng.integers(0, 2, (num, 1))
  return joints, vis


@pytest.mark.parametrize('seed', range(20))
def test_affine_matrix_and_warp_equal_official(seed):
  rng = np.random.default_rng(seed)
  center = rng.uniform(0, 640, 2).astype(np.float32)
  scale = rng.uniform(0.2, 3.0, 2).astype(np.float32)
  rot = float(np.clip(rng.standard_normal() * 45, -90, 90)) if seed % 3 else 0.0
  size = [(192, 256), (288, 384), (256, 256)][seed % 3]
  for inverse in (False, True):
    ours = kt.get_affine_transform(center, scale, rot, size, inverse=inverse)
    ref = ref_get_affine_transform(center, scale, rot, size, inv=int(inverse))
    # The official points are float32: equal up to their rounding (relative 1e-5) ...
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
    # ... and to 1e-9 against the same construction carried out in float64.
    exact = ref_get_affine_transform(center, scale, rot, size, inv=int(inverse),
                                     dtype=np.float64)
    np.testing.assert_allclose(ours, exact, rtol=1e-9, atol=1e-9)
  pts = rng.uniform(0, 640, (17, 2))
  trans = ref_get_affine_transform(center, scale, rot, size, dtype=np.float64)
  ref_pts = np.stack([ref_affine_transform(p, trans) for p in pts])
  np.testing.assert_allclose(kt.affine_points(pts, kt.get_affine_transform(
      center, scale, rot, size)), ref_pts, rtol=1e-9, atol=1e-7)


def test_warp_equals_official_crop():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (120, 90, 3), dtype=np.uint8)
  center, scale = np.array([40.3, 66.1], np.float32), np.array([0.4, 0.53], np.float32)
  trans = ref_get_affine_transform(center, scale, 30.0, (48, 64))
  ref = cv2.warpAffine(image, trans, (48, 64), flags=cv2.INTER_LINEAR)
  ours = kt.warp(image, kt.get_affine_transform(center, scale, 30.0, (48, 64)), (48, 64))
  # Matrices agree to ~1e-6; bilinear weights then round to the same byte almost always.
  assert np.abs(ours.astype(int) - ref).max() <= 1
  assert (ours == ref).mean() > 0.99


@pytest.mark.parametrize('seed', range(10))
def test_box_center_scale_and_clean_box(seed):
  rng = np.random.default_rng(seed)
  x, y, w, h = rng.uniform(-30, 300, 4)
  ratio = [192 / 256, 288 / 384, 1.0][seed % 3]
  c, s = kt.box_to_center_scale([x, y, w, h], ratio)
  rc, rs = ref_xywh2cs(x, y, w, h, ratio)
  np.testing.assert_allclose(c, rc, rtol=1e-6)
  np.testing.assert_allclose(s, rs, rtol=1e-6)
  # coco.py sanitising of a box partly outside a 200x150 image.
  box = kt.clean_box([x, y, w, h], 200, 150)
  x1, y1 = max(0, x), max(0, y)
  x2, y2 = min(199, x1 + max(0, w - 1)), min(149, y1 + max(0, h - 1))
  if x2 >= x1 and y2 >= y1:
    np.testing.assert_allclose(box, [x1, y1, x2 - x1, y2 - y1])
  else:
    assert box is None


@pytest.mark.parametrize('seed', range(30))
def test_half_body_and_flip_equal_official(seed):
  rng = np.random.default_rng(seed)
  joints, vis = _random_person(rng)
  randn = float(rng.standard_normal())
  ours = kt.half_body_center_scale(joints, vis, kt.COCO_UPPER_BODY, 0.75, randn < 0.5)
  ref = ref_half_body(joints, vis, kt.COCO_UPPER_BODY, 0.75, randn)
  if ref[0] is None:
    assert ours == (None, None)
  else:
    np.testing.assert_allclose(ours[0], ref[0], rtol=1e-6)
    np.testing.assert_allclose(ours[1], ref[1], rtol=1e-6)
  fj, fv = kt.flip_joints(joints, vis, 640, kt.COCO_FLIP_PAIRS)
  rj, rv = ref_fliplr_joints(joints, vis, 640, COCO_PAIRS)
  np.testing.assert_array_equal(fj, rj)
  np.testing.assert_array_equal(fv, rv)


def test_augment_person_order_equals_official_getitem():
  """Half body, scale, flip (centre W-1-cx), then the crop matrix from those."""
  rng = np.random.default_rng(3)
  joints, vis = _random_person(rng)
  vis[:, :2] = 1
  image = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
  c, s = ref_xywh2cs(100, 50, 200, 300, 0.75)
  aug = kt.PoseAugmentation(half_body=True, take_upper=False, scale_factor=1.2,
                            rotation=-35.0, flip=True)
  img2, j2, v2, c2, s2, r = kt.augment_person(
      image, joints, vis, c, s, aug, aspect_ratio=0.75, upper_body=kt.COCO_UPPER_BODY,
      flip_pairs=kt.COCO_FLIP_PAIRS)
  rc, rs = ref_half_body(joints, vis, kt.COCO_UPPER_BODY, 0.75, 1.0)
  rs = rs * 1.2
  rj, rv = ref_fliplr_joints(joints, vis, 640, COCO_PAIRS)
  rc = rc.copy()
  rc[0] = 640 - rc[0] - 1
  np.testing.assert_array_equal(img2, image[:, ::-1])
  np.testing.assert_allclose(c2, rc, rtol=1e-6)
  np.testing.assert_allclose(s2, rs, rtol=1e-6)
  np.testing.assert_array_equal(j2, rj)
  crop, cj = kt.crop_person(img2, j2, v2, c2, s2, r, (192, 256))
  trans = ref_get_affine_transform(rc, rs, -35.0, (192, 256), dtype=np.float64)
  ref_joints = rj.copy()
  for i in range(17):
    if rv[i, 0] > 0:
      ref_joints[i, 0:2] = ref_affine_transform(rj[i, 0:2], trans)
  np.testing.assert_allclose(cj, ref_joints, rtol=1e-9, atol=1e-7)
  assert crop.shape == (256, 192, 3)


@pytest.mark.parametrize('sigma,image_size,heatmap_size', [
    (2, (192, 256), (48, 64)), (3, (288, 384), (72, 96)), (2, (256, 256), (64, 64))])
def test_pose_targets_equal_official(sigma, image_size, heatmap_size):
  rng = np.random.default_rng(sigma)
  for _ in range(10):
    joints, vis = _random_person(rng)
    # Some joints just off the map: their window may still overlap (weight stays 1).
    joints[:3, 0] = [-10, image_size[0] + 9, -40]
    ours_t, ours_w = kt.pose_targets(joints, vis, image_size, heatmap_size, sigma)
    ref_t, ref_w = ref_generate_target(joints, vis, np.array(image_size),
                                       np.array(heatmap_size), sigma)
    np.testing.assert_allclose(ours_t, ref_t, atol=1e-6)
    np.testing.assert_array_equal(ours_w, ref_w)
    assert ours_t.shape == (17, heatmap_size[1], heatmap_size[0])


@pytest.mark.parametrize('seed', range(5))
def test_pose_decoding_and_flip_back_equal_official(seed):
  rng = np.random.default_rng(seed)
  n, j, h, w = 4, 17, 64, 48
  heat = rng.standard_normal((n, j, h, w)).astype(np.float32)
  heat[0, 0] = -1.0                          # maximum <= 0: coordinates zeroed
  heat[1, 1] = 0
  heat[1, 1, 0, 5] = 1.0                     # peak on the border: no offset
  center = rng.uniform(0, 600, (n, 2)).astype(np.float32)
  scale = rng.uniform(0.5, 3, (n, 2)).astype(np.float32)
  ours, ours_max = kd.pose_predictions(heat.transpose(0, 2, 3, 1), center, scale)
  ref, ref_max = ref_get_final_preds(heat.copy(), center, scale)
  np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-4)
  np.testing.assert_array_equal(ours_max, ref_max)
  flipped = rng.standard_normal((n, j, h, w)).astype(np.float32)
  ref_back = ref_flip_back(flipped, COCO_PAIRS)
  ref_back[:, :, :, 1:] = ref_back.copy()[:, :, :, 0:-1]
  ours_back = kd.flip_back(flipped.transpose(0, 2, 3, 1), kt.COCO_FLIP_PAIRS)
  np.testing.assert_array_equal(ours_back, ref_back.transpose(0, 2, 3, 1))
  import jax.numpy as jnp   # the same on device arrays
  np.testing.assert_array_equal(
      np.asarray(kd.flip_back(jnp.asarray(flipped.transpose(0, 2, 3, 1)), kt.COCO_FLIP_PAIRS)),
      ref_back.transpose(0, 2, 3, 1))


@pytest.mark.parametrize('seed', range(10))
def test_landmark_transform_pixel_and_targets_equal_official(seed):
  rng = np.random.default_rng(seed)
  center = rng.uniform(50, 400, 2)
  scale = float(rng.uniform(0.5, 2.5))
  rot = float(rng.uniform(-30, 30)) if seed % 2 else 0.0
  sigma = 1.0 if seed % 3 == 0 else 1.5
  pts = rng.uniform(-10, 450, (29, 2))
  pts[:3, 1] = [-1.0, 0.0, 3.0]               # y <= 0: no target
  ours_t, ours_p = lt.landmark_targets(pts, center, scale, (64, 64), sigma, rot)
  ref_t = np.zeros((29, 64, 64))
  tpts = pts.copy()
  for i in range(29):
    if tpts[i, 1] > 0:
      tpts[i, 0:2] = ref_transform_pixel(tpts[i, 0:2] + 1, center, scale, [64, 64], rot=rot)
      ref_t[i] = ref_face_generate_target(ref_t[i], tpts[i] - 1, sigma)
  np.testing.assert_allclose(ours_t, ref_t, atol=1e-6)
  np.testing.assert_array_equal(ours_p, tpts)
  for pt in rng.uniform(-5, 300, (10, 2)):
    for invert in (0, 1):
      np.testing.assert_array_equal(
          lt.transform_pixel(pt, center, scale, [256, 256], invert, rot),
          ref_transform_pixel(pt, center, scale, [256, 256], invert, rot))


@pytest.mark.parametrize('seed', range(5))
def test_landmark_decoding_equals_official(seed):
  rng = np.random.default_rng(seed)
  n, j = 3, 29
  heat = rng.standard_normal((n, j, 64, 64)).astype(np.float32)
  heat[0, 0] = -2.0                          # zeroed coordinates, then +0.5 and back
  heat[1, 2] = 0
  heat[1, 2, 10, 63] = 3.0                   # peak in the last column: no offset
  heat[2, 3] = 0
  heat[2, 3, 62, 1] = 3.0                    # x0 = 1, y0 = 62: offsets applied
  center = rng.uniform(50, 400, (n, 2))
  scale = rng.uniform(0.5, 2.5, n)
  ours = kd.landmark_predictions(heat.transpose(0, 2, 3, 1), center, scale)
  ref = ref_face_decode_preds(torch.from_numpy(heat), center, scale, [64, 64]).numpy()
  np.testing.assert_array_equal(ours, ref)


def test_landmark_flip_pairs_and_flip():
  for name, pairs in lt.LANDMARK_FLIP_PAIRS.items():
    flat = [i for p in pairs for i in p]
    assert len(flat) == len(set(flat)) and max(flat) < lt.NUM_LANDMARKS[name], name
  pts = np.random.default_rng(0).uniform(0, 100, (19, 2))
  ref = pts.copy()
  ref[:, 0] = 100 - ref[:, 0]
  for a, b in ((1, 6), (2, 5), (3, 4), (7, 12), (8, 11), (9, 10), (13, 15), (16, 18)):
    ref[[a - 1, b - 1]] = ref[[b - 1, a - 1]]
  np.testing.assert_array_equal(lt.flip_landmarks(pts, 100, lt.LANDMARK_FLIP_PAIRS['aflw']), ref)


def test_face_crop_without_rotation_is_a_stretched_window():
  """No rotation, crop smaller than twice the output: the integer window of
  transform_pixel, byte-scaled (min -> 0, max -> 255), PIL-bilinear resized."""
  from PIL import Image
  rng = np.random.default_rng(1)
  image = rng.uniform(40, 200, (300, 280, 3)).astype(np.float32)
  center, scale = np.array([150.2, 140.7]), 1.3
  out = lt.face_crop(image, center, scale, (256, 256), 0.0)
  ul = ref_transform_pixel([0, 0], center, scale, [256, 256], invert=1)
  br = ref_transform_pixel([256, 256], center, scale, [256, 256], invert=1)
  window = image[ul[1]:br[1], ul[0]:br[0]]
  stretched = ((window - window.min()) * (255.0 / (window.max() - window.min()))
               .clip(0, 255) + 0.5).astype(np.uint8)
  ref = np.asarray(Image.fromarray(stretched, 'RGB').resize((256, 256), Image.BILINEAR))
  np.testing.assert_array_equal(out, ref)
  assert out.dtype == np.uint8 and out.shape == (256, 256, 3)
  # With rotation the crop keeps its size and the content turns counter-clockwise.
  rot = lt.face_crop(image, center, scale, (256, 256), 20.0)
  assert rot.shape == (256, 256, 3)

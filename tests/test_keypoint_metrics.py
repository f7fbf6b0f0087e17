"""COCO rescoring / OKS-NMS / AP, MPII PCKh and landmark NME against the official code
(rewritten line by line here) and pycocotools run by hand on the written json."""
import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from hrnet_jax.tasks import keypoint_coco as kc
from hrnet_jax.tasks import keypoint_metrics as km


# ----------------------------------------------------------------------------
# Official lib/nms/nms.py and the rescoring loop of coco.py evaluate, line by line.
# ----------------------------------------------------------------------------
def ref_oks_iou(g, d, a_g, a_d, sigmas):
  vars_ = (sigmas * 2) ** 2
  xg, yg = g[0::3], g[1::3]
  ious = np.zeros((d.shape[0]))
  for n_d in range(0, d.shape[0]):
    xd, yd = d[n_d, 0::3], d[n_d, 1::3]
    dx, dy = xd - xg, yd - yg
    e = (dx ** 2 + dy ** 2) / vars_ / ((a_g + a_d[n_d]) / 2 + np.spacing(1)) / 2
    ious[n_d] = np.sum(np.exp(-e)) / e.shape[0] if e.shape[0] != 0 else 0.0
  return ious


def ref_oks_nms(kpts_db, thresh, sigmas):
  if len(kpts_db) == 0:
    return []
  scores = np.array([kpts_db[i]['score'] for i in range(len(kpts_db))])
  kpts = np.array([kpts_db[i]['keypoints'].flatten() for i in range(len(kpts_db))])
  areas = np.array([kpts_db[i]['area'] for i in range(len(kpts_db))])
  order = scores.argsort()[::-1]
  keep = []
  while order.size > 0:
    i = order[0]
    keep.append(i)
    oks_ovr = ref_oks_iou(kpts[i], kpts[order[1:]], areas[i], areas[order[1:]], sigmas)
    inds = np.where(oks_ovr <= thresh)[0]
    order = order[inds + 1]
  return keep


def ref_evaluate(preds, all_boxes, image_ids, in_vis_thre=0.2, oks_thre=0.9):
  kpts = {}
  for idx, kpt in enumerate(preds):
    kpts.setdefault(image_ids[idx], []).append({
        'keypoints': kpt, 'center': all_boxes[idx][0:2], 'scale': all_boxes[idx][2:4],
        'area': all_boxes[idx][4], 'score': all_boxes[idx][5], 'image': image_ids[idx]})
  out = []
  for img in kpts:
    img_kpts = kpts[img]
    for n_p in img_kpts:
      box_score = n_p['score']
      kpt_score, valid_num = 0, 0
      for n_jt in range(0, 17):
        t_s = n_p['keypoints'][n_jt][2]
        if t_s > in_vis_thre:
          kpt_score = kpt_score + t_s
          valid_num = valid_num + 1
      if valid_num != 0:
        kpt_score = kpt_score / valid_num
      n_p['score'] = kpt_score * box_score
    keep = ref_oks_nms(img_kpts, oks_thre, kc.COCO_SIGMAS)
    kept = img_kpts if len(keep) == 0 else [img_kpts[k] for k in keep]
    out.extend((k['image'], k['score'], tuple(k['keypoints'].reshape(-1))) for k in kept)
  return out


def _gt_json(rng, num_images=6, people=3):
  images, anns = [], []
  for i in range(num_images):
    images.append({'id': 100 + i, 'width': 320, 'height': 240,
                   'file_name': f'{100 + i:012d}.jpg'})
    for p in range(people):
      x, y = rng.uniform(10, 200), rng.uniform(10, 120)
      w, h = rng.uniform(40, 110), rng.uniform(60, 110)
      kp = np.zeros((17, 3))
      kp[:, 0] = rng.uniform(x, x + w, 17)
      kp[:, 1] = rng.uniform(y, y + h, 17)
      kp[:, 2] = rng.choice([0, 1, 2], 17, p=[0.2, 0.2, 0.6])
      kp[kp[:, 2] == 0, :2] = 0
      anns.append({'id': len(anns) + 1, 'image_id': 100 + i, 'category_id': 1,
                   'bbox': [x, y, w, h], 'area': w * h * 0.6, 'iscrowd': 0,
                   'num_keypoints': int((kp[:, 2] > 0).sum()),
                   'keypoints': kp.reshape(-1).tolist()})
  return {'images': images, 'annotations': anns,
          'categories': [{'id': 1, 'name': 'person', 'supercategory': 'person',
                          'keypoints': [str(k) for k in range(17)], 'skeleton': []}]}


def _predictions(rng, gt, noise):
  """Noisy copies of the ground truth plus duplicates (for OKS-NMS) and strays."""
  image_ids, kps, centers, scales, scores = [], [], [], [], []
  for ann in gt['annotations']:
    kp = np.asarray(ann['keypoints'], float).reshape(17, 3)
    x, y, w, h = ann['bbox']
    base = kp[:, :2] + rng.normal(0, noise, (17, 2))
    base[kp[:, 2] == 0] = rng.uniform(0, 200, (int((kp[:, 2] == 0).sum()), 2))
    for copy in range(2 if rng.random() < 0.5 else 1):
      pred = np.zeros((17, 3))
      # A second copy lies within a pixel or so: OKS above 0.9, suppressed.
      pred[:, :2] = base + rng.normal(0, 0.5, (17, 2)) * copy
      pred[:, 2] = rng.uniform(0, 1, 17)
      image_ids.append(ann['image_id'])
      kps.append(pred)
      centers.append([x + w / 2, y + h / 2])
      scales.append([w / 200 * 1.25, h / 200 * 1.25])
      scores.append(rng.uniform(0.3, 1))
  return (image_ids, np.array(kps), np.array(centers), np.array(scales), np.array(scores))


def test_rescoring_and_oks_nms_equal_official():
  rng = np.random.default_rng(0)
  gt = _gt_json(rng)
  image_ids, kps, centers, scales, scores = _predictions(rng, gt, noise=3.0)
  ours = kc.coco_results(image_ids, kps, centers, scales, scores)
  boxes = np.c_[centers, scales, np.prod(scales * 200, 1), scores]
  ref = ref_evaluate(list(kps), boxes, image_ids)
  assert len(ours) < len(kps)                     # duplicates were suppressed
  assert sorted((r['image_id'], round(r['score'], 12), tuple(np.round(r['keypoints'], 9)))
                for r in ours) == \
      sorted((i, round(s, 12), tuple(np.round(k, 9))) for i, s, k in ref)


def test_ap_equals_cocoeval_by_hand(tmp_path):
  rng = np.random.default_rng(1)
  gt = _gt_json(rng)
  gt_path = tmp_path / 'person_keypoints_val2017.json'
  gt_path.write_text(json.dumps(gt))
  image_ids, kps, centers, scales, scores = _predictions(rng, gt, noise=4.0)
  res_path = kc.write_results(str(tmp_path / 'results' / 'keypoints_val2017_results_0.json'),
                              kc.coco_results(image_ids, kps, centers, scales, scores))
  ours = kc.evaluate_results(str(gt_path), res_path)
  with contextlib.redirect_stdout(io.StringIO()):
    coco = COCO(str(gt_path))
    dt = coco.loadRes(res_path)
    ev = COCOeval(coco, dt, 'keypoints')
    ev.params.useSegm = None
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
  assert list(ours) == list(kc.STAT_NAMES)
  np.testing.assert_array_equal([ours[k] for k in kc.STAT_NAMES], ev.stats[:10])
  assert 0.05 < ours['AP'] < 0.99
  # Perfect predictions score AP 1.
  perfect = [{'image_id': a['image_id'], 'category_id': 1, 'keypoints': a['keypoints'],
              'score': 1.0} for a in gt['annotations']]
  kc.write_results(str(tmp_path / 'perfect.json'), perfect)
  assert kc.evaluate_results(gt, str(tmp_path / 'perfect.json'))['AP'] == pytest.approx(1.0)


def test_results_for_unknown_images_fail_in_one_line(tmp_path):
  gt = _gt_json(np.random.default_rng(2), num_images=1)
  kc.write_results(str(tmp_path / 'r.json'), [
      {'image_id': 999, 'category_id': 1, 'keypoints': [0.0] * 51, 'score': 1.0}])
  with pytest.raises(kc.KeypointEvalError, match=r'image ids \[999\]'):
    kc.evaluate_results(gt, str(tmp_path / 'r.json'))


# ----------------------------------------------------------------------------
# MPII: the official evaluate() after loading gt_valid.mat, line by line.
# ----------------------------------------------------------------------------
def ref_mpii(preds, pos_gt_src, headboxes_src, jnt_missing):
  preds = preds[:, :, 0:2] + 1.0
  dataset_joints = np.array([list(km.MPII_JOINTS)])
  pos_pred_src = np.transpose(preds, [1, 2, 0])

  def find(name):
    return np.where(dataset_joints == name)[1][0]

  head, lsho, lelb, lwri, lhip = (find(n) for n in ('head', 'lsho', 'lelb', 'lwri', 'lhip'))
  lkne, lank, rsho, relb, rwri = (find(n) for n in ('lkne', 'lank', 'rsho', 'relb', 'rwri'))
  rkne, rank, rhip = (find(n) for n in ('rkne', 'rank', 'rhip'))
  jnt_visible = 1 - jnt_missing
  uv_error = pos_pred_src - pos_gt_src
  uv_err = np.linalg.norm(uv_error, axis=1)
  headsizes = headboxes_src[1, :, :] - headboxes_src[0, :, :]
  headsizes = np.linalg.norm(headsizes, axis=0)
  headsizes *= 0.6
  scale = np.multiply(headsizes, np.ones((len(uv_err), 1)))
  scaled_uv_err = np.divide(uv_err, scale)
  scaled_uv_err = np.multiply(scaled_uv_err, jnt_visible)
  jnt_count = np.sum(jnt_visible, axis=1)
  less_than_threshold = np.multiply((scaled_uv_err <= 0.5), jnt_visible)
  PCKh = np.divide(100. * np.sum(less_than_threshold, axis=1), jnt_count)
  rng = np.arange(0, 0.5 + 0.01, 0.01)
  pckAll = np.zeros((len(rng), 16))
  for r in range(len(rng)):
    less_than_threshold = np.multiply(scaled_uv_err <= rng[r], jnt_visible)
    pckAll[r, :] = np.divide(100. * np.sum(less_than_threshold, axis=1), jnt_count)
  PCKh = np.ma.array(PCKh, mask=False)
  PCKh.mask[6:8] = True
  jnt_count = np.ma.array(jnt_count, mask=False)
  jnt_count.mask[6:8] = True
  jnt_ratio = jnt_count / np.sum(jnt_count).astype(np.float64)
  return {'Head': PCKh[head], 'Shoulder': 0.5 * (PCKh[lsho] + PCKh[rsho]),
          'Elbow': 0.5 * (PCKh[lelb] + PCKh[relb]), 'Wrist': 0.5 * (PCKh[lwri] + PCKh[rwri]),
          'Hip': 0.5 * (PCKh[lhip] + PCKh[rhip]), 'Knee': 0.5 * (PCKh[lkne] + PCKh[rkne]),
          'Ankle': 0.5 * (PCKh[lank] + PCKh[rank]), 'Mean': np.sum(PCKh * jnt_ratio),
          'Mean@0.1': np.sum(pckAll[11, :] * jnt_ratio)}


def test_mpii_pckh_equals_official():
  rng = np.random.default_rng(3)
  n = 50
  gt = rng.uniform(50, 500, (n, 16, 2))
  head_tl = rng.uniform(50, 400, (n, 2))
  headboxes = np.stack([head_tl, head_tl + rng.uniform(20, 60, (n, 2))], axis=1)
  missing = (rng.random((n, 16)) < 0.15).astype(np.float64)
  preds = gt - 1 + rng.normal(0, 12, (n, 16, 2))
  ours = km.mpii_pckh(preds, gt, headboxes, missing)
  ref = ref_mpii(preds, gt.transpose(1, 2, 0), headboxes.transpose(1, 2, 0),
                 missing.T)
  assert list(ours) == list(ref)
  for k in ref:
    assert ours[k] == pytest.approx(float(ref[k]), abs=1e-9), k
  assert 20 < ours['Mean'] < 95 and ours['Mean@0.1'] < ours['Mean']


# ----------------------------------------------------------------------------
# Landmarks.
# ----------------------------------------------------------------------------
@pytest.mark.parametrize('dataset,num', [('wflw', 98), ('300w', 68), ('cofw', 29),
                                         ('aflw', 19)])
def test_nme_equals_numpy_formula(dataset, num):
  rng = np.random.default_rng(num)
  n = 40
  gt = rng.uniform(0, 256, (n, num, 2))
  preds = gt + rng.normal(0, 3, (n, num, 2))
  box = rng.uniform(80, 200, n)
  ours = km.nme_per_image(preds, gt, km.landmark_normalisers(gt, dataset, box_size=box))
  pair = {'wflw': (60, 72), '300w': (36, 45), 'cofw': (8, 9)}.get(dataset)
  for i in range(n):
    d = box[i] if dataset == 'aflw' else np.linalg.norm(gt[i, pair[0]] - gt[i, pair[1]])
    expected = sum(np.sqrt(((preds[i, l] - gt[i, l]) ** 2).sum()) for l in range(num)) / (d * num)
    assert ours[i] == pytest.approx(expected, rel=1e-12)
  metrics = km.landmark_metrics(ours)
  assert metrics['NME'] == pytest.approx(ours.mean())
  assert metrics['FR@0.1'] == pytest.approx((ours > 0.1).mean())
  assert metrics['FR@0.08'] == pytest.approx((ours > 0.08).mean())
  # AUC@0.1 against a fine numerical integral of the cumulative error distribution.
  t = np.linspace(0, 0.1, 100001)
  ced = (ours[None, :] <= t[:, None]).mean(axis=1)
  assert metrics['AUC@0.1'] == pytest.approx(np.trapezoid(ced, t) / 0.1, abs=1e-4)


def test_unknown_landmark_dataset_is_one_line():
  with pytest.raises(ValueError, match='no NME normalisation for dataset'):
    km.landmark_normalisers(np.zeros((1, 5, 2)), 'helen')

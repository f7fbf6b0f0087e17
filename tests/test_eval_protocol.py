"""The JAX test protocol against a literal numpy/PyTorch rewrite of the official one.

The reference below follows `BaseDataset.inference`, `BaseDataset.multi_scale_inference`
(windows on the stride grid, padded with black) and `Cityscapes.multi_scale_inference`
(windows shifted to end at the border) line by line: one image at a time, cv2 for the
image resize, torch's F.interpolate for the logits, a torch copy of the network.
"""
import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import eval_testlib
from hrnet_jax.evaluation import inference
from hrnet_jax.training import sharding

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def _torch_net(variables):
  p = variables['params']
  c1 = torch.nn.Conv2d(3, 8, 3, 2, 1)
  c2 = torch.nn.Conv2d(8, p['c2']['bias'].shape[0], 3, 2, 1)
  for conv, name in ((c1, 'c1'), (c2, 'c2')):
    conv.weight.data = torch.from_numpy(np.asarray(p[name]['kernel']).transpose(3, 2, 0, 1).copy())
    conv.bias.data = torch.from_numpy(np.asarray(p[name]['bias']).copy())
  return lambda x: c2(torch.relu(c1(x)))


# ----------------------------------------------------------------------------
# The official procedure, rewritten literally (NCHW torch, batch 1).
# ----------------------------------------------------------------------------
def _ref_inference(net, image, flip, align_corners, flip_pairs):
  size = image.shape
  pred = F.interpolate(net(image), size=size[-2:], mode='bilinear', align_corners=align_corners)
  if flip:
    flip_img = image.numpy()[:, :, :, ::-1]
    flip_output = F.interpolate(net(torch.from_numpy(flip_img.copy())), size=size[-2:],
                                mode='bilinear', align_corners=align_corners)
    flip_pred = flip_output.numpy().copy()
    for a, b in flip_pairs:
      flip_pred[:, a] = flip_output[:, b].numpy()
      flip_pred[:, b] = flip_output[:, a].numpy()
    pred = pred + torch.from_numpy(flip_pred[:, :, :, ::-1].copy())
    pred = pred * 0.5
  return pred.exp()


def _ref_multi_scale(net, image_uint8, *, num_classes, scales, flip, crop, stride_rate,
                     base_size, layout, align_corners, flip_pairs=()):
  image = image_uint8.astype(np.float32) / 255.0   # RGB already
  image -= MEAN
  image /= STD
  image = image.astype(np.float32)
  ori_h, ori_w = image.shape[:2]
  stride_h, stride_w = int(crop[0] * stride_rate), int(crop[1] * stride_rate)
  final = torch.zeros([1, num_classes, ori_h, ori_w])
  padvalue = (-1.0 * MEAN / STD).tolist()
  for scale in scales:
    long_size = int(base_size * scale + 0.5)
    h, w = image.shape[:2]
    if h > w:
      new_h, new_w = long_size, int(w * long_size / h + 0.5)
    else:
      new_w, new_h = long_size, int(h * long_size / w + 0.5)
    new_img = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    height, width = new_img.shape[:-1]
    if layout == 'border' and scale <= 1.0:   # Cityscapes: whole image, whatever the crop
      x = torch.from_numpy(np.expand_dims(new_img.transpose(2, 0, 1), 0).copy())
      preds = _ref_inference(net, x, flip, align_corners, flip_pairs)[:, :, 0:height, 0:width]
      final += F.interpolate(preds, (ori_h, ori_w), mode='bilinear',
                             align_corners=align_corners)
      continue
    if layout == 'pad' and (height < crop[0] or width < crop[1]):
      new_img = cv2.copyMakeBorder(new_img, 0, max(crop[0] - height, 0), 0,
                                   max(crop[1] - width, 0), cv2.BORDER_CONSTANT, value=padvalue)
    nh, nw = new_img.shape[:-1]
    rows = int(np.ceil(1.0 * (nh - crop[0]) / stride_h)) + 1
    cols = int(np.ceil(1.0 * (nw - crop[1]) / stride_w)) + 1
    preds = torch.zeros([1, num_classes, nh, nw])
    count = torch.zeros([1, 1, nh, nw])
    for r in range(rows):
      for c in range(cols):
        h0, w0 = r * stride_h, c * stride_w
        h1, w1 = min(h0 + crop[0], nh), min(w0 + crop[1], nw)
        if layout == 'border':
          h0, w0 = max(int(h1 - crop[0]), 0), max(int(w1 - crop[1]), 0)
        crop_img = new_img[h0:h1, w0:w1, :]
        if layout == 'pad' and (h1 == nh or w1 == nw):
          crop_img = cv2.copyMakeBorder(crop_img, 0, max(crop[0] - (h1 - h0), 0), 0,
                                        max(crop[1] - (w1 - w0), 0), cv2.BORDER_CONSTANT,
                                        value=padvalue)
        crop_t = torch.from_numpy(np.expand_dims(crop_img.transpose(2, 0, 1), 0).copy())
        pred = _ref_inference(net, crop_t, flip, align_corners, flip_pairs)
        preds[:, :, h0:h1, w0:w1] += pred[:, :, 0:h1 - h0, 0:w1 - w0]
        count[:, :, h0:h1, w0:w1] += 1
    preds = (preds / count)[:, :, :height, :width]
    preds = F.interpolate(preds, (ori_h, ori_w), mode='bilinear', align_corners=align_corners)
    final += preds
  return final[0].numpy().transpose(1, 2, 0)


CASES = {
    # Cityscapes: crop = the full image, stride = crop, windows aligned to the border;
    # scales <= 1 are single windows, > 1 several overlapping ones.
    'cityscapes_ms_flip': dict(size=(24, 48), crop=(24, 48), stride_rate=1.0, layout='border',
                               scales=(0.5, 0.75, 1.0, 1.25, 1.5, 1.75), flip=True,
                               base_size=48, align_corners=False, num_classes=5),
    # The base code (PASCAL-Context, ADE20K): stride 2/3 of the crop, black padding, an
    # image smaller than the crop at scale 0.5, align_corners True (HRNet-OCR branch).
    'base_sliding_pad': dict(size=(30, 41), crop=(24, 24), stride_rate=2.0 / 3.0,
                             layout='pad', scales=(0.5, 1.0, 1.5), flip=True, base_size=41,
                             align_corners=True, num_classes=4),
    # LIP: flip swaps left/right classes.
    'lip_flip_pairs': dict(size=(29, 29), crop=(29, 29), stride_rate=2.0 / 3.0, layout='pad',
                           scales=(1.0,), flip=True, base_size=29, align_corners=False,
                           num_classes=6, flip_pairs=((2, 3), (4, 5))),
    # Border layout with stride 2/3 of a crop smaller than the image: scale 0.75 still
    # runs whole-image (the Cityscapes code), 1.25 in windows.
    'border_sliding': dict(size=(33, 50), crop=(20, 24), stride_rate=2.0 / 3.0,
                           layout='border', scales=(0.75, 1.25), flip=False, base_size=50,
                           align_corners=False, num_classes=3),
}


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(CASES))
def test_protocol_matches_official_reference(name):
  case = CASES[name]
  model = eval_testlib.TinySeg(case['num_classes'])
  h, w = case['size']
  variables = model.init(jax.random.key(1), jnp.zeros((1, h, w, 3)))
  images = np.random.default_rng(0).integers(0, 256, (2, h, w, 3), dtype=np.uint8)
  protocol = inference.Protocol(
      scales=case['scales'], flip=case['flip'], mode='sliding', crop_size=case['crop'],
      stride_rate=case['stride_rate'], window_layout=case['layout'],
      base_size=case['base_size'], align_corners=case['align_corners'],
      flip_pairs=case.get('flip_pairs', ()))
  fn = jax.jit(lambda v, x: inference.predict_probs(
      lambda vv, xx: model.apply(vv, xx), v, x, protocol))
  mesh = sharding.make_mesh(devices=jax.devices()[:2])
  got = np.asarray(fn(variables, jax.device_put(images, sharding.batch_sharding(mesh))))
  net = _torch_net(variables)
  with torch.no_grad():
    for i in range(len(images)):
      ref = _ref_multi_scale(net, images[i], num_classes=case['num_classes'],
                             scales=case['scales'], flip=case['flip'], crop=case['crop'],
                             stride_rate=case['stride_rate'], base_size=case['base_size'],
                             layout=case['layout'], align_corners=case['align_corners'],
                             flip_pairs=case.get('flip_pairs', ()))
      np.testing.assert_allclose(got[i], ref, rtol=1e-5, atol=1e-5)
      np.testing.assert_array_equal(got[i].argmax(-1), ref.argmax(-1))


def test_window_grids():
  p = inference.Protocol(mode='sliding', crop_size=(1024, 2048), stride_rate=1.0,
                         window_layout='border')
  # Cityscapes at scale 1.75: 1792 x 3584 -> 2 x 2 windows, the last ones end at the border.
  padded, starts, win = inference.window_grid(1792, 3584, p)
  assert padded == (1792, 3584) and win == (1024, 2048)
  assert starts == [(0, 0), (0, 1536), (768, 0), (768, 1536)]
  # Scale 0.5: the crop covers the image, one window of the image's own size.
  assert inference.window_grid(512, 1024, p) == ((512, 1024), [(0, 0)], (512, 1024))
  q = inference.Protocol(mode='sliding', crop_size=(520, 520), window_layout='pad')
  padded, starts, win = inference.window_grid(375, 700, q)
  assert padded == (520, 700) and win == (520, 520)
  assert starts == [(0, 0), (0, 346)]


def test_scaled_size_is_the_official_formula():
  p = inference.Protocol(base_size=2048)
  assert p.scaled_size(1024, 2048, 0.75) == (768, 1536)
  assert p.scaled_size(1024, 2048, 1.75) == (1792, 3584)
  q = inference.Protocol(base_size=520)
  assert q.scaled_size(500, 375, 1.0) == (520, int(375 * 520 / 500 + 0.5))

"""Preprocessing against straightforward re-implementations of the official code."""
import cv2
import numpy as np
import pytest

from hrnet_jax.data import transforms

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def official_gen_sample(image_bgr, label, *, rand_scale, x, y, flip, crop_size, base_size,
                        ignore_label, multi_scale=True):
  """BaseDataset.gen_sample of HRNet-Semantic-Segmentation, transcribed step by step.

  Random draws are given: rand_scale (random.randint), x, y (random.randint in rand_crop),
  flip (np.random.choice). Returns the CHW float image and the label the model sees.
  """
  if multi_scale:
    long_size = int(base_size * rand_scale + 0.5)
    h, w = image_bgr.shape[:2]
    if h > w:
      new_h, new_w = long_size, int(w * long_size / h + 0.5)
    else:
      new_w, new_h = long_size, int(h * long_size / w + 0.5)
    image_bgr = cv2.resize(image_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    label = cv2.resize(label, (new_w, new_h), interpolation=cv2.INTER_NEAREST)
    h, w = image_bgr.shape[:-1]
    pad_h, pad_w = max(crop_size[0] - h, 0), max(crop_size[1] - w, 0)
    if pad_h > 0 or pad_w > 0:
      image_bgr = cv2.copyMakeBorder(image_bgr, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT,
                                     value=(0.0, 0.0, 0.0))
      label = cv2.copyMakeBorder(label, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT,
                                 value=(ignore_label,))
    image_bgr = image_bgr[y:y + crop_size[0], x:x + crop_size[1]]
    label = label[y:y + crop_size[0], x:x + crop_size[1]]
  image = image_bgr.astype(np.float32)[:, :, ::-1] / 255.0   # input_transform
  image -= MEAN
  image /= STD
  image = image.transpose((2, 0, 1))
  if flip:
    image = image[:, :, ::-1]
    label = label[:, ::-1]
  return image, label


def official_lip_sample(image_bgr, label, *, rand_scale, x, y, flip, crop_size, base_size,
                        ignore_label):
  """LIP.__getitem__: flip with left/right swaps, resize to the crop, then gen_sample."""
  if flip:
    image_bgr, label = image_bgr[:, ::-1, :], label[:, ::-1].copy()
    right_idx, left_idx = [15, 17, 19], [14, 16, 18]
    for i in range(3):
      right_pos = np.where(label == right_idx[i])
      left_pos = np.where(label == left_idx[i])
      label[right_pos[0], right_pos[1]] = left_idx[i]
      label[left_pos[0], left_pos[1]] = right_idx[i]
  size = (crop_size[1], crop_size[0])
  image_bgr = cv2.resize(np.ascontiguousarray(image_bgr), size, interpolation=cv2.INTER_LINEAR)
  label = cv2.resize(label, size, interpolation=cv2.INTER_NEAREST)
  return official_gen_sample(image_bgr, label, rand_scale=rand_scale, x=x, y=y, flip=False,
                             crop_size=crop_size, base_size=base_size,
                             ignore_label=ignore_label)


def ours_as_model_input(image, label):
  x = (image.astype(np.float32)[:, :, ::-1] / 255.0 - MEAN) / STD   # BGR uint8 -> RGB
  return x.transpose(2, 0, 1), label


def _random_pair(rng, h, w, num_classes=20):
  # Smooth image (realistic for bilinear) and blocky label.
  small = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
  image = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
  image = np.clip(image.astype(np.int32) + rng.integers(-20, 20, image.shape), 0, 255)
  label = cv2.resize(rng.integers(0, num_classes, (h // 6 + 1, w // 6 + 1), dtype=np.uint8),
                     (w, h), interpolation=cv2.INTER_NEAREST)
  return image.astype(np.uint8), label


@pytest.mark.parametrize('h,w,crop,base', [
    (96, 192, (48, 96), 192),     # Cityscapes-like aspect, crop smaller than the image
    (90, 70, (64, 64), 80),       # portrait, odd sizes: padding at small scales
    (75, 75, (80, 80), 75),       # square, always padded at s <= 1
])
def test_segmentation_transform_matches_official(h, w, crop, base):
  rng = np.random.default_rng(0)
  image, label = _random_pair(rng, h, w)
  for trial in range(24):
    draw = transforms.draw_segmentation(rng, h, w, crop_size=crop, base_size=base,
                                        scale_factor=16, multi_scale=True, flip=True)
    ours_img, ours_lab = transforms.apply_segmentation(
        image, label, draw, crop_size=crop, base_size=base, ignore_label=255)
    ref_img, ref_lab = official_gen_sample(
        image, label, rand_scale=draw.scale, x=draw.crop_x, y=draw.crop_y, flip=draw.flip,
        crop_size=crop, base_size=base, ignore_label=255)
    got_img, got_lab = ours_as_model_input(ours_img, ours_lab)
    assert ours_img.dtype == np.uint8 and ours_img.shape == crop + (3,), trial
    np.testing.assert_allclose(got_img, ref_img, rtol=0, atol=1e-5, err_msg=str(draw))
    np.testing.assert_array_equal(got_lab, ref_lab, err_msg=str(draw))


def test_lip_transform_matches_official_including_swaps():
  rng = np.random.default_rng(1)
  image, label = _random_pair(rng, 70, 50)
  crop = (40, 40)
  flipped_seen = 0
  for _ in range(16):
    draw = transforms.draw_segmentation(rng, 70, 50, crop_size=crop, base_size=40,
                                        scale_factor=11, multi_scale=True, flip=True,
                                        lip_order=True)
    flipped_seen += draw.flip
    ours = transforms.apply_segmentation(image, label, draw, crop_size=crop, base_size=40,
                                         ignore_label=255, flip_pairs=((14, 15), (16, 17),
                                                                       (18, 19)),
                                         lip_order=True)
    ref_img, ref_lab = official_lip_sample(image, label, rand_scale=draw.scale, x=draw.crop_x,
                                           y=draw.crop_y, flip=draw.flip, crop_size=crop,
                                           base_size=40, ignore_label=255)
    got_img, got_lab = ours_as_model_input(*ours)
    np.testing.assert_allclose(got_img, ref_img, atol=1e-5)
    np.testing.assert_array_equal(got_lab, ref_lab)
  assert 0 < flipped_seen < 16


def test_scale_and_crop_draws_cover_the_official_ranges():
  rng = np.random.default_rng(2)
  scales, xs, ys, flips = set(), set(), set(), set()
  for _ in range(3000):
    d = transforms.draw_segmentation(rng, 40, 80, crop_size=(16, 32), base_size=80,
                                     scale_factor=16, multi_scale=True, flip=True)
    scales.add(round(d.scale, 6))
    if d.scale == 1.0:                    # resized to 40x80: x in [0, 48], y in [0, 24]
      xs.add(d.crop_x)
      ys.add(d.crop_y)
    flips.add(d.flip)
  assert scales == {round(0.5 + k / 10, 6) for k in range(17)}
  assert xs == set(range(49)) and ys == set(range(25))
  assert flips == {False, True}
  d = transforms.draw_segmentation(rng, 40, 80, crop_size=(16, 32), base_size=80,
                                   scale_factor=16, multi_scale=False, flip=False)
  assert d.scale == 1.0 and not d.flip


@pytest.mark.parametrize('h,w,long_size', [(1024, 2048, 1434), (500, 375, 520), (333, 500, 411),
                                           (473, 473, 709), (7, 3, 10)])
def test_scaled_size_rounding(h, w, long_size):
  # Official: the long side becomes long_size, the other int(side * long / long_side + .5).
  got = transforms.scaled_size(h, w, long_size)
  if h > w:
    assert got == (long_size, int(np.floor(w * long_size / h + 0.5)))
  else:
    assert got == (int(np.floor(h * long_size / w + 0.5)), long_size)
  assert transforms.long_side(2048, 0.7) == 1434   # int(1433.6 + 0.5)


def test_image_and_label_stay_aligned_through_every_augmentation():
  """The label is a function of the image colour; every transform must keep that."""
  rng = np.random.default_rng(3)
  palette = rng.permutation(np.arange(0, 256, 13, dtype=np.uint8))[:19]
  blocks = rng.integers(0, 19, (12, 24))
  label = np.kron(blocks, np.ones((16, 16), np.int64)).astype(np.uint8)    # 192 x 384
  image = np.repeat(palette[label][..., None], 3, axis=2)
  lookup = np.full(256, 255, np.uint8)
  lookup[palette] = np.arange(19)
  checked = 0
  for _ in range(40):
    draw = transforms.draw_segmentation(rng, 192, 384, crop_size=(96, 192), base_size=384,
                                        scale_factor=16, multi_scale=True, flip=True)
    img, lab = transforms.apply_segmentation(image, label, draw, crop_size=(96, 192),
                                             base_size=384, ignore_label=255)
    grey = img[..., 0]
    # Compare where the bilinear image is flat (5x5 constant): there the colour is exact.
    flat = (cv2.erode(grey, np.ones((5, 5))) == cv2.dilate(grey, np.ones((5, 5))))
    valid = flat & (lab != 255)
    np.testing.assert_array_equal(lookup[grey[valid]], lab[valid], err_msg=str(draw))
    padded = lab == 255
    assert (grey[padded] == 0).all()    # pad: image 0 exactly where label is ignore
    checked += valid.sum()
  assert checked > 40 * 96 * 192 * 0.4


def test_swap_classes_only_swaps_pairs():
  label = np.arange(256, dtype=np.uint8).reshape(16, 16)
  out = transforms.swap_classes(label, ((14, 15), (16, 17), (18, 19)))
  expected = label.copy()
  for a, b in ((14, 15), (16, 17), (18, 19)):
    expected[label == a], expected[label == b] = b, a
  np.testing.assert_array_equal(out, expected)


def test_pad_to():
  a = np.arange(6, dtype=np.uint8).reshape(2, 3)
  out = transforms.pad_to(a, (3, 4), 255)
  np.testing.assert_array_equal(out, [[0, 1, 2, 255], [3, 4, 5, 255], [255] * 4])
  with pytest.raises(ValueError):
    transforms.pad_to(a, (1, 4), 0)


def test_normalize_matches_official_input_transform():
  from hrnet_jax.data import normalize
  rng = np.random.default_rng(4)
  rgb = rng.integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
  ref = rgb.astype(np.float32) / 255.0
  ref -= MEAN
  ref /= STD
  np.testing.assert_allclose(np.asarray(normalize(rgb)), ref, atol=1e-6)


# --- classification: torchvision is the reference -----------------------------------------

def test_classification_transforms_match_torchvision():
  torchvision = pytest.importorskip('torchvision')
  from PIL import Image
  tf = torchvision.transforms
  rng = np.random.default_rng(5)
  image = _random_pair(rng, 300, 420)[0]
  pil = Image.fromarray(image)
  box = transforms.draw_resized_crop(rng, 300, 420)
  top, left, h, w = box
  assert 0 <= top <= 300 - h and 0 <= left <= 420 - w
  ref = tf.functional.resized_crop(pil, top, left, h, w, [64, 64],
                                   tf.InterpolationMode.BILINEAR)
  np.testing.assert_array_equal(transforms.apply_resized_crop(image, box, 64, False),
                                np.asarray(ref))
  np.testing.assert_array_equal(transforms.apply_resized_crop(image, box, 64, True),
                                np.asarray(ref)[:, ::-1])
  ref_eval = tf.Compose([tf.Resize(256), tf.CenterCrop(224)])(pil)
  np.testing.assert_array_equal(transforms.eval_classification(image, resize=256, crop=224),
                                np.asarray(ref_eval))


def test_resized_crop_fallback_matches_torchvision():
  torchvision = pytest.importorskip('torchvision')
  from PIL import Image
  # A 10x1000 strip: no sampled crop fits, so both take the deterministic fallback.
  pil = Image.fromarray(np.zeros((10, 1000, 3), np.uint8))
  ref = torchvision.transforms.RandomResizedCrop.get_params(pil, [0.99, 1.0], [3 / 4, 4 / 3])
  got = transforms.draw_resized_crop(np.random.default_rng(0), 10, 1000, scale=(0.99, 1.0))
  assert got == tuple(ref)

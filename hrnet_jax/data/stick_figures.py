"""Procedural people: articulated stick figures with the 17 COCO joints, for the built-in
synthetic pose dataset and the fake COCO archives of the tests.

Every figure faces the camera (its left side is on the image's right, as for a real
person seen from the front), so the horizontal flip with the COCO flip pairs is a valid
augmentation. Limbs are thick strokes in clothing colours, the head a disc with eyes and
nose. Visibility follows COCO: 2 visible, 1 labelled but hidden (behind another figure
or an occluder), 0 outside the image (then x = y = 0).
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

# (joint, parent) drawing order: torso, then limbs; indices are COCO joints.
LIMBS = ((5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16))
SKELETON = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6),
            (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5),
            (4, 6))   # COCO's skeleton, 0-based, for drawing


@dataclasses.dataclass
class Person:
  keypoints: np.ndarray   # (17, 3) x, y, v
  box: np.ndarray         # (4,) xywh of the drawn figure
  area: float             # visible pixels


def _rot(v, degrees):
  r = np.deg2rad(degrees)
  c, s = np.cos(r), np.sin(r)
  return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def figure_joints(rng: np.random.Generator, height: float, origin: np.ndarray) -> np.ndarray:
  """(17, 2) joint positions of a random pose; `origin` is the hip centre, `height` the
  standing height in pixels. x grows to the image right, y down."""
  h = height
  lean = rng.normal(0, 8)
  up = _rot(np.array([0.0, -1.0]), lean)          # torso axis, hips -> shoulders
  right = np.array([-up[1], up[0]])               # the figure's left = image right
  hips = origin
  neck = hips + up * 0.30 * h
  j = np.zeros((17, 2))
  j[5], j[6] = neck + right * 0.11 * h, neck - right * 0.11 * h    # l/r shoulder
  j[11], j[12] = hips + right * 0.08 * h, hips - right * 0.08 * h  # l/r hip
  head_axis = _rot(up, rng.normal(0, 10))
  nose = neck + head_axis * 0.12 * h
  j[0] = nose
  side = np.array([-head_axis[1], head_axis[0]])
  j[1] = nose + side * 0.03 * h + head_axis * 0.02 * h     # eyes above the nose
  j[2] = nose - side * 0.03 * h + head_axis * 0.02 * h
  j[3], j[4] = nose + side * 0.065 * h, nose - side * 0.065 * h      # ears
  # Arms: angles from hanging down; the left arm swings to the image right.
  down = -up
  for sign, (sho, elb, wri) in ((1, (5, 7, 9)), (-1, (6, 8, 10))):
    a1 = sign * rng.uniform(-20, 150)
    a2 = a1 + sign * rng.uniform(-10, 140)
    j[elb] = j[sho] + _rot(down, -a1) * 0.17 * h
    j[wri] = j[elb] + _rot(down, -a2) * 0.15 * h
  for sign, (hip, knee, ank) in ((1, (11, 13, 15)), (-1, (12, 14, 16))):
    a1 = sign * rng.uniform(-15, 60)
    a2 = a1 - sign * rng.uniform(0, 90)
    j[knee] = j[hip] + _rot(down, -a1) * 0.24 * h
    j[ank] = j[knee] + _rot(down, -a2) * 0.23 * h
  return j


def _background(rng, height, width):
  base = rng.uniform(40, 200, 3)
  noise = cv2.resize(rng.normal(0, 1, (height // 16 + 1, width // 16 + 1, 3)), (width, height),
                     interpolation=cv2.INTER_CUBIC)
  image = np.clip(base + 30 * noise, 0, 255).astype(np.uint8)
  for _ in range(rng.integers(2, 6)):   # clutter: rectangles and lines
    p = rng.integers(0, [width, height])
    q = p + rng.integers(-width // 3, width // 3, 2)
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    if rng.random() < 0.5:
      cv2.rectangle(image, tuple(map(int, p)), tuple(map(int, q)), colour, -1)
    else:
      cv2.line(image, tuple(map(int, p)), tuple(map(int, q)), colour,
               int(rng.integers(1, 6)), cv2.LINE_AA)
  return image


def _draw(image, owner, pid, joints, h, rng):
  shirt = tuple(int(c) for c in rng.integers(0, 256, 3))
  trousers = tuple(int(c) for c in rng.integers(0, 256, 3))
  skin = tuple(int(c) for c in np.array([224, 172, 140]) * rng.uniform(0.5, 1.1))
  mask = np.zeros(owner.shape, np.uint8)

  def pt(p):
    return tuple(int(round(v)) for v in p)

  limb = max(2, int(0.05 * h))
  torso = np.array([joints[5], joints[6], joints[12], joints[11]]).round().astype(np.int32)
  cv2.fillConvexPoly(image, torso, shirt, cv2.LINE_AA)
  cv2.fillConvexPoly(mask, torso, 1)
  for a, b in LIMBS:
    colour = trousers if a >= 11 else shirt
    cv2.line(image, pt(joints[a]), pt(joints[b]), colour, limb, cv2.LINE_AA)
    cv2.line(mask, pt(joints[a]), pt(joints[b]), 1, limb)
    end = skin if b in (9, 10) else (30, 30, 30) if b in (15, 16) else colour
    cv2.circle(image, pt(joints[b]), max(2, limb // 2 + 1), end, -1, cv2.LINE_AA)
    cv2.circle(mask, pt(joints[b]), max(2, limb // 2 + 1), 1, -1)
  neck = (joints[5] + joints[6]) / 2
  cv2.line(image, pt(neck), pt(joints[0]), skin, max(2, limb // 2), cv2.LINE_AA)
  radius = max(3, int(0.075 * h))
  head = joints[0] + (joints[0] - neck) * 0.1
  cv2.circle(image, pt(head), radius, skin, -1, cv2.LINE_AA)
  cv2.circle(mask, pt(head), radius, 1, -1)
  dot = max(1, radius // 5)
  for k, colour in ((1, (20, 20, 20)), (2, (20, 20, 20)), (0, (150, 60, 60)),
                    (3, (120, 90, 70)), (4, (120, 90, 70))):
    cv2.circle(image, pt(joints[k]), dot, colour, -1, cv2.LINE_AA)
  owner[mask > 0] = pid


def render_people(rng: np.random.Generator, height: int, width: int, *,
                  max_people: int = 3, min_height: float = 0.45, max_height: float = 0.95,
                  occluders: bool = True) -> tuple[np.ndarray, list[Person]]:
  """An RGB uint8 image with 1..max_people figures and their COCO annotations."""
  image = _background(rng, height, width)
  owner = np.full((height, width), -1, np.int32)
  people_joints, heights = [], []
  for pid in range(int(rng.integers(1, max_people + 1))):
    h = rng.uniform(min_height, max_height) * height
    origin = np.array([rng.uniform(0.1, 0.9) * width, rng.uniform(0.45, 0.7) * height])
    joints = figure_joints(rng, h, origin)
    _draw(image, owner, pid, joints, h, rng)
    people_joints.append(joints)
    heights.append(h)
  drawn = owner.copy()     # what each figure covers, before occluders
  if occluders:
    for _ in range(int(rng.integers(0, 3))):
      c = rng.integers(0, [width, height])
      axes = rng.integers(height // 12, height // 5, 2)
      colour = tuple(int(v) for v in rng.integers(0, 256, 3))
      angle = float(rng.uniform(0, 180))
      cv2.ellipse(image, tuple(map(int, c)), tuple(map(int, axes)), angle, 0, 360, colour, -1,
                  cv2.LINE_AA)
      cv2.ellipse(owner, tuple(map(int, c)), tuple(map(int, axes)), angle, 0, 360, -2, -1)
  people = []
  for pid, joints in enumerate(people_joints):
    kps = np.zeros((17, 3), np.float32)
    for k, (x, y) in enumerate(joints):
      if not (0 <= x <= width - 1 and 0 <= y <= height - 1):
        continue          # outside the image: unlabelled (0, 0, 0)
      xi, yi = int(round(x)), int(round(y))
      kps[k] = (x, y, 2 if owner[yi, xi] == pid else 1)
    ys, xs = np.nonzero(drawn == pid)
    if len(xs) == 0 or kps[:, 2].max() == 0:
      continue
    box = np.array([xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1],
                   np.float32)
    people.append(Person(kps, box, float((owner == pid).sum())))
  return image, people


def draw_skeleton(image: np.ndarray, keypoints: np.ndarray, colour=(0, 255, 0),
                  threshold: float = 0.0, skeleton=SKELETON) -> np.ndarray:
  """Draws (J, 3) keypoints (x, y, score or visibility) and the skeleton's bones whose two
  ends score above `threshold`; returns a copy."""
  out = np.ascontiguousarray(image).copy()
  kps = np.asarray(keypoints, np.float64)
  scale = max(1, int(round(max(out.shape[:2]) / 200)))
  for a, b in skeleton:
    if a < len(kps) and b < len(kps) and kps[a, 2] > threshold and kps[b, 2] > threshold:
      cv2.line(out, tuple(int(round(v)) for v in kps[a, :2]),
               tuple(int(round(v)) for v in kps[b, :2]), colour, scale, cv2.LINE_AA)
  for x, y, s in kps:
    if s > threshold:
      cv2.circle(out, (int(round(x)), int(round(y))), scale + 1, colour, -1, cv2.LINE_AA)
  return out

"""Procedural street scenes with Cityscapes trainId labels (the `hrnet_synthetic` data).

Pure numpy + OpenCV, deterministic given a `np.random.Generator`. Every class has its
own colour family, texture and typical place in the scene (sky on top, road in the
middle bottom, people on the sidewalks, lights and signs on poles, riders on two-wheelers),
so a small network can learn them in minutes, while noise, illumination, perspective,
occlusion and look-alike pairs (person/rider, wall/building, road/sidewalk) keep it from
being a colour lookup.
"""
from __future__ import annotations

import cv2
import numpy as np

IGNORE = 255
(ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY,
 PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE) = range(19)

# Each class has its own colour family (jittered per instance, shaded, noisy, lit
# differently per image); only small parts (windows, tyres, heads) share colours, and
# there context decides.
_CAR_COLOURS = ((30, 60, 170), (60, 100, 200), (20, 35, 110), (90, 140, 215))   # blues
_BUS_COLOURS = ((205, 40, 40), (175, 30, 55))                                  # reds
_PERSON_COLOURS = ((140, 40, 90), (110, 30, 70), (160, 60, 110))               # plums
_RIDER_COLOURS = ((245, 120, 20), (250, 150, 40))                              # hi-vis
_SKIN = (205, 160, 130)
_GLASS = (40, 45, 60)
_TYRE = (25, 25, 25)


class _Canvas:
  """An image being painted together with its label map (painter's algorithm)."""

  def __init__(self, height: int, width: int, rng: np.random.Generator):
    self.h, self.w, self.rng = height, width, rng
    self.image = np.zeros((height, width, 3), np.float32)
    self.label = np.full((height, width), IGNORE, np.uint8)

  def new_mask(self) -> np.ndarray:
    return np.zeros((self.h, self.w), np.uint8)

  def paint(self, mask: np.ndarray, cls: int, colour, *, texture: str = 'noise',
            sigma: float = 6.0, period: float = 6.0, jitter: float = 10.0) -> None:
    x0, y0, w, h = cv2.boundingRect(mask)
    if w == 0 or h == 0:
      return
    y1, x1 = y0 + h, x0 + w
    rng = self.rng
    base = np.asarray(colour, np.float32) + rng.normal(0.0, jitter, 3).astype(np.float32)
    tex = np.broadcast_to(base, (h, w, 3)).copy()
    yy = np.arange(h, dtype=np.float32)[:, None, None]
    xx = np.arange(w, dtype=np.float32)[None, :, None]
    if texture == 'hstripes':      # bricks, siding
      tex *= np.where((yy % period) < 1.2, 0.75, 1.0)
    elif texture == 'vstripes':    # fence slats, truck box corrugation
      tex *= np.where((xx % period) < period / 2, 0.78, 1.0)
    elif texture == 'grid':        # sidewalk tiles
      tex *= np.where(((yy % period) < 1.0) | ((xx % period) < 1.0), 0.8, 1.0)
    elif texture == 'leaves':      # vegetation: strong blotchy high frequency
      blotch = cv2.resize(rng.standard_normal((max(h // 3, 1), max(w // 3, 1)),
                                              dtype=np.float32), (w, h))
      tex *= (1.0 + 0.25 * blotch)[..., None]
    elif texture == 'mottled':     # terrain: soft low frequency
      blotch = cv2.resize(rng.standard_normal((max(h // 12, 1), max(w // 12, 1)),
                                              dtype=np.float32), (w, h),
                          interpolation=cv2.INTER_CUBIC)
      tex *= (1.0 + 0.15 * blotch)[..., None]
    elif texture == 'cylinder':    # poles: shading across the width
      tex *= (0.7 + 0.5 * np.sin(np.pi * (xx + 0.5) / w))
    elif texture == 'vgradient':   # sky: lighter towards the horizon
      tex *= (0.85 + 0.3 * yy / max(h - 1, 1))
    tex += sigma * rng.standard_normal((h, w, 1), dtype=np.float32)
    m = mask[y0:y1, x0:x1].view(bool)
    np.copyto(self.image[y0:y1, x0:x1], tex, where=m[..., None])
    np.copyto(self.label[y0:y1, x0:x1], np.uint8(cls), where=m)

  def rect(self, x0, y0, x1, y1, cls, colour, **kw) -> np.ndarray:
    mask = self.new_mask()
    cv2.rectangle(mask, (int(x0), int(y0)), (int(x1) - 1, int(y1) - 1), 1, -1)
    self.paint(mask, cls, colour, **kw)
    return mask

  def poly(self, points, cls, colour, **kw) -> np.ndarray:
    mask = self.new_mask()
    cv2.fillPoly(mask, [np.asarray(points, np.int32)], 1)
    self.paint(mask, cls, colour, **kw)
    return mask

  def ellipse(self, cx, cy, rx, ry, cls, colour, thickness=-1, **kw) -> np.ndarray:
    mask = self.new_mask()
    cv2.ellipse(mask, (int(cx), int(cy)), (max(int(rx), 1), max(int(ry), 1)), 0, 0, 360, 1,
                thickness)
    self.paint(mask, cls, colour, **kw)
    return mask

  def overlay(self, mask, colour, sigma=3.0):
    """Recolours pixels without changing their label (windows, lamps, markings)."""
    x0, y0, w, h = cv2.boundingRect(mask)
    if w and h:
      m = mask[y0:y0 + h, x0:x0 + w].view(bool)
      tex = np.asarray(colour, np.float32) + sigma * self.rng.standard_normal(
          (h, w, 1), dtype=np.float32)
      np.copyto(self.image[y0:y0 + h, x0:x0 + w], tex, where=m[..., None])


def _background(c: _Canvas, horizon: int, u: float):
  """Paints sky, buildings, trees and ground; returns road_span(y) -> (left, right)."""
  rng, h, w = c.rng, c.h, c.w
  c.rect(0, 0, w, horizon + 8 * u, SKY, (95 + rng.integers(-20, 20), 150, 225),
         texture='vgradient', sigma=3.0)
  # Buildings along the horizon, with gaps showing sky.
  x = -rng.uniform(0, 30 * u)
  while x < w:
    bw = rng.uniform(40, 120) * u
    if rng.random() > 0.15:
      top = max(horizon - rng.uniform(40, 150) * u, 2 * u)
      tone = rng.choice(np.asarray([(120, 100, 90), (105, 95, 95), (130, 110, 95)]))
      mask = c.rect(x, top, x + bw, horizon + 6 * u, BUILDING, tone, sigma=4.0)
      win = c.new_mask()
      step, size = rng.uniform(13, 19) * u, rng.uniform(5, 8) * u
      for wy in np.arange(top + 0.6 * step, horizon - size, step):
        for wx in np.arange(x + 0.5 * step, x + bw - size, step):
          cv2.rectangle(win, (int(wx), int(wy)), (int(wx + size), int(wy + 1.3 * size)), 1, -1)
      c.overlay(win & mask, _GLASS)
    x += bw
  # Trees between and in front of the buildings.
  for _ in range(rng.integers(2, 5)):
    cx, r = rng.uniform(0, w), rng.uniform(18, 42) * u
    cy = horizon - rng.uniform(0.4, 1.2) * r
    c.rect(cx - 3 * u, cy, cx + 3 * u, horizon + 8 * u, VEGETATION, (60, 95, 35), sigma=4)
    c.ellipse(cx, cy, r * rng.uniform(0.8, 1.3), r, VEGETATION, (50, 135, 40),
              texture='leaves', sigma=8.0)
  # Ground: sidewalk everywhere, terrain verges at the sides, road in the middle.
  c.rect(0, horizon, w, h, SIDEWALK, (190, 150, 175), texture='grid',
         period=max(10 * u, 3), sigma=5.0)
  vx = w * rng.uniform(0.4, 0.6)
  half_top = w * rng.uniform(0.03, 0.06)
  left_bottom, right_bottom = w * rng.uniform(0.05, 0.22), w * rng.uniform(0.78, 0.95)
  for side in (0, 1):
    if rng.random() < 0.7:
      edge = 0 if side == 0 else w
      far = vx + (-1 if side == 0 else 1) * half_top * rng.uniform(3, 5)
      near = edge + (1 if side == 0 else -1) * w * rng.uniform(0.0, 0.04)
      c.poly([(edge, horizon), (far, horizon), (near, h), (edge, h)], TERRAIN, (165, 130, 70),
             texture='mottled', sigma=5.0)
  road = [(vx - half_top, horizon), (vx + half_top, horizon), (right_bottom, h),
          (left_bottom, h)]
  c.poly(road, ROAD, (70, 70, 82), sigma=6.0)
  marks = c.new_mask()
  for t0 in np.arange(0.05, 1.0, 0.16):
    ya, yb = horizon + (h - horizon) * t0, horizon + (h - horizon) * (t0 + 0.07)
    xa = vx + ((left_bottom + right_bottom) / 2 - vx) * t0
    xb = vx + ((left_bottom + right_bottom) / 2 - vx) * (t0 + 0.07)
    cv2.line(marks, (int(xa), int(ya)), (int(xb), int(yb)), 1,
             max(int(2 * u * (0.5 + t0)), 1))
  c.overlay(marks, (225, 225, 220))

  def road_span(y: float) -> tuple[float, float]:
    t = (y - horizon) / (h - horizon)
    return (vx - half_top + t * (left_bottom - vx + half_top),
            vx + half_top + t * (right_bottom - vx - half_top))
  return road_span


def _depth(y: float, horizon: int, h: int) -> float:
  return 0.6 + 0.7 * (y - horizon) / (h - horizon)


def _barriers(c: _Canvas, horizon: int, u: float) -> None:
  rng = c.rng
  for k in range(rng.integers(2, 4)):
    x0 = rng.uniform(-0.1, 0.85) * c.w
    x1 = x0 + rng.uniform(0.15, 0.35) * c.w
    bottom = horizon + rng.uniform(6, 18) * u
    top = bottom - rng.uniform(22, 40) * u
    if k % 2 == rng.integers(2):   # a mix of walls and fences in most scenes
      c.rect(x0, top, x1, bottom, WALL, (205, 205, 120), texture='hstripes',
             period=max(6 * u, 2), sigma=4.0)
    else:
      c.rect(x0, top, x1, bottom, FENCE, (80, 150, 170), texture='vstripes',
             period=max(5 * u, 2), sigma=4.0)


def _pole(c: _Canvas, x: float, base: float, s: float, u: float) -> None:
  rng = c.rng
  height, width = rng.uniform(110, 160) * u * s, rng.uniform(12, 16) * u * s
  top = max(base - height, 4 * u)
  c.rect(x - width / 2, top, x + width / 2, base, POLE, (170, 170, 170), texture='cylinder',
         sigma=3.0)
  if rng.random() < 0.55:
    lw, lh = 24 * u * s, 52 * u * s
    ly = top + rng.uniform(0, 0.15) * height
    side = rng.choice([-1, 1])
    lx = x + side * (width / 2 + lw / 2)
    box = c.rect(lx - lw / 2, ly, lx + lw / 2, ly + lh, LIGHT, (45, 60, 20), sigma=3.0)
    lit = rng.integers(3)
    for k, colour in enumerate(((230, 40, 30), (240, 180, 30), (40, 220, 90))):
      lamp = c.new_mask()
      cv2.circle(lamp, (int(lx), int(ly + lh * (k + 0.5) / 3)), max(int(lw * 0.3), 1), 1, -1)
      c.overlay(lamp & box, colour if k == lit else (80, 90, 50))
  if rng.random() < 0.6:
    sz = rng.uniform(30, 40) * u * s
    sy = top + rng.uniform(0.3, 0.5) * height
    kind = rng.integers(3)
    if kind == 0:     # round: red rim, white face
      outer = c.ellipse(x, sy, sz / 2, sz / 2, SIGN, (240, 215, 30), sigma=3.0)
      inner = c.new_mask()
      cv2.circle(inner, (int(x), int(sy)), max(int(sz * 0.32), 1), 1, -1)
      c.overlay(inner & outer, (240, 240, 235))
    elif kind == 1:   # square
      c.rect(x - sz / 2, sy - sz / 2, x + sz / 2, sy + sz / 2, SIGN, (250, 190, 20), sigma=3.0)
    else:             # yellow diamond
      c.poly([(x, sy - sz / 2), (x + sz / 2, sy), (x, sy + sz / 2), (x - sz / 2, sy)], SIGN,
             (240, 200, 25), sigma=3.0)


def _human(c: _Canvas, x: float, feet: float, height: float, cls: int, clothes) -> None:
  """A standing (person) or seated (rider, legs hidden by the vehicle) figure."""
  head_r = height * 0.09
  torso_top = feet - height + 2 * head_r
  torso_bottom = feet - height * 0.45
  half = height * 0.13
  if cls == PERSON:
    legs = tuple(int(v * 0.6) for v in clothes)
    c.rect(x - half * 0.9, torso_bottom, x - half * 0.1, feet, cls, legs, sigma=4)
    c.rect(x + half * 0.1, torso_bottom, x + half * 0.9, feet, cls, legs, sigma=4)
  c.rect(x - half, torso_top, x + half, torso_bottom, cls, clothes, sigma=4)
  c.rect(x - half * 1.35, torso_top + head_r * 0.3, x - half, torso_bottom - head_r * 0.5,
         cls, clothes, sigma=4)
  c.rect(x + half, torso_top + head_r * 0.3, x + half * 1.35, torso_bottom - head_r * 0.5,
         cls, clothes, sigma=4)
  head = (235, 235, 235) if cls == RIDER else _SKIN   # riders wear helmets
  c.ellipse(x, torso_top - head_r, head_r, head_r * 1.1, cls, head, sigma=4)


def _two_wheeler(c: _Canvas, x: float, base: float, s: float, u: float, cls: int,
                 ridden: bool) -> None:
  rng = c.rng
  length = (88 if cls == MOTORCYCLE else 80) * u * s
  r = length * 0.24
  cy = base - r
  xa, xb = x - length / 2 + r, x + length / 2 - r
  if cls == MOTORCYCLE:
    colour = (125, 35, 160)
    c.ellipse(xa, cy, r, r, cls, (70, 20, 90), sigma=3)
    c.ellipse(xb, cy, r, r, cls, (70, 20, 90), sigma=3)
    c.poly([(xa, cy - r * 0.2), (x - length * 0.1, cy - 1.6 * r), (xb + r * 0.3, cy - 1.4 * r),
            (xb, cy - r * 0.2)], cls, colour, sigma=4)
  else:
    colour = (235, 80, 185)
    thick = max(int(8 * u * s), 1)
    c.ellipse(xa, cy, r, r, cls, colour, thickness=thick, sigma=3)
    c.ellipse(xb, cy, r, r, cls, colour, thickness=thick, sigma=3)
    frame = c.new_mask()
    pts = [(xa, cy), (x, cy - 1.2 * r), (xb, cy), (x - r * 0.2, cy), (xa, cy)]
    cv2.polylines(frame, [np.asarray(pts, np.int32)], False, 1, thick)
    c.paint(frame, cls, colour, sigma=4)
  if ridden:
    _human(c, x - length * 0.05, cy - r * 0.3, 85 * u * s, RIDER,
           _RIDER_COLOURS[rng.integers(len(_RIDER_COLOURS))])


def _vehicle(c: _Canvas, cls: int, x: float, base: float, s: float, u: float) -> None:
  rng = c.rng
  dims = {CAR: (95, 45), TRUCK: (140, 90), BUS: (180, 80), TRAIN: (260, 62)}[cls]
  vw, vh = dims[0] * u * s * rng.uniform(0.9, 1.1), dims[1] * u * s * rng.uniform(0.9, 1.1)
  x0, x1, top = x - vw / 2, x + vw / 2, base - vh
  r = vh * 0.16
  if cls == CAR:
    colour = _CAR_COLOURS[rng.integers(len(_CAR_COLOURS))]
    c.rect(x0, top + vh * 0.4, x1, base - r * 0.6, cls, colour, sigma=4)
    cabin = c.poly([(x0 + vw * 0.2, top + vh * 0.42), (x0 + vw * 0.3, top),
                    (x1 - vw * 0.28, top), (x1 - vw * 0.12, top + vh * 0.42)], cls, colour,
                   sigma=4)
    glass = c.new_mask()
    cv2.fillPoly(glass, [np.asarray([(x0 + vw * 0.26, top + vh * 0.38),
                                     (x0 + vw * 0.33, top + vh * 0.08),
                                     (x1 - vw * 0.31, top + vh * 0.08),
                                     (x1 - vw * 0.17, top + vh * 0.38)], np.int32)], 1)
    c.overlay(glass & cabin, _GLASS)
  elif cls == TRUCK:
    cab_w = vw * 0.28
    c.rect(x0, top, x1 - cab_w, base - r * 0.6, cls, (225, 225, 215), texture='vstripes',
           period=max(6 * u * s, 2), sigma=3)
    cab = c.rect(x1 - cab_w, top + vh * 0.3, x1, base - r * 0.6, cls, (190, 190, 180), sigma=4)
    glass = c.new_mask()
    cv2.rectangle(glass, (int(x1 - cab_w * 0.8), int(top + vh * 0.36)),
                  (int(x1 - cab_w * 0.1), int(top + vh * 0.55)), 1, -1)
    c.overlay(glass & cab, _GLASS)
  else:   # bus / tram: long boxes with a window band
    colour = (_BUS_COLOURS[rng.integers(len(_BUS_COLOURS))] if cls == BUS
              else (40, 150, 150))
    box = c.rect(x0, top, x1, base - r * 0.4, cls, colour, sigma=4)
    band = c.new_mask()
    cv2.rectangle(band, (int(x0 + vw * 0.03), int(top + vh * 0.15)),
                  (int(x1 - vw * 0.03), int(top + vh * 0.45)), 1, -1)
    c.overlay(band & box, _GLASS)
    if cls == TRAIN:
      stripe = c.new_mask()
      cv2.rectangle(stripe, (int(x0), int(top + vh * 0.6)), (int(x1), int(top + vh * 0.68)),
                    1, -1)
      c.overlay(stripe & box, (235, 200, 40))
  if cls != TRAIN:
    for wx in (x0 + vw * 0.18, x1 - vw * 0.18):
      c.ellipse(wx, base - r, r, r, cls, _TYRE, sigma=3)


def render_scene(rng: np.random.Generator, height: int, width: int
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Returns (image uint8 (h, w, 3) RGB, label uint8 (h, w) trainIds, 255 = ignore)."""
  u = height / 256.0
  c = _Canvas(height, width, rng)
  horizon = int(height * rng.uniform(0.38, 0.5))
  road_span = _background(c, horizon, u)
  if rng.random() < 0.35:   # a tram on the far lane
    y = horizon + rng.uniform(8, 16) * u
    lo, hi = road_span(y)
    _vehicle(c, TRAIN, rng.uniform(lo, hi), y, 1.0, u)
  _barriers(c, horizon, u)
  # Objects from far to near so nearer ones occlude farther ones.
  objects = []
  for _ in range(rng.integers(3, 6)):
    objects.append(('pole', rng.uniform(horizon + 25 * u, height - 5 * u)))
  for _ in range(rng.integers(2, 6)):
    objects.append(('person', rng.uniform(horizon + 25 * u, height - 5 * u)))
  for _ in range(rng.integers(3, 6)):
    kind = rng.choice(['car', 'car', 'truck', 'bus', 'motorcycle', 'bicycle'])
    objects.append((str(kind), rng.uniform(horizon + 20 * u, height - 5 * u)))
  if rng.random() < 0.4:
    objects.append(('parked_bicycle', rng.uniform(horizon + 25 * u, height - 5 * u)))
  if rng.random() < 0.3:
    objects.append(('clutter', rng.uniform(horizon + 20 * u, height - 5 * u)))
  for kind, base in sorted(objects, key=lambda o: o[1]):
    s = _depth(base, horizon, height)
    lo, hi = road_span(base)
    on_side = (rng.uniform(0, max(lo - 8 * u, 1)) if rng.random() < 0.5
               else rng.uniform(min(hi + 8 * u, width - 1), width))
    if kind == 'pole':
      _pole(c, on_side, base, s, u)
    elif kind == 'person':
      _human(c, on_side, base, 95 * u * s, PERSON,
             _PERSON_COLOURS[rng.integers(len(_PERSON_COLOURS))])
    elif kind in ('car', 'truck', 'bus'):
      cls = {'car': CAR, 'truck': TRUCK, 'bus': BUS}[kind]
      _vehicle(c, cls, rng.uniform(lo, hi), base, s, u)
    elif kind in ('motorcycle', 'bicycle'):
      cls = MOTORCYCLE if kind == 'motorcycle' else BICYCLE
      _two_wheeler(c, rng.uniform(lo, hi), base, s, u, cls, ridden=True)
    elif kind == 'parked_bicycle':
      _two_wheeler(c, on_side, base, s, u, BICYCLE, ridden=False)
    else:   # unlabelled clutter (bins, boxes): ignored like Cityscapes' void classes
      cw = rng.uniform(12, 22) * u * s
      c.rect(on_side - cw / 2, base - 1.4 * cw, on_side + cw / 2, base, IGNORE,
             tuple(int(v) for v in rng.integers(40, 200, 3)), sigma=6)
  if rng.random() < 0.5:   # ego-vehicle bonnet, void as in Cityscapes
    c.ellipse(width / 2, height + height * 0.02, width * 0.7, height * rng.uniform(0.06, 0.1),
              IGNORE, (28, 30, 36), sigma=2)
  gain = rng.uniform(0.8, 1.15) * rng.uniform(0.95, 1.05, 3)
  image = c.image * gain.astype(np.float32)
  image += 3.0 * rng.standard_normal(image.shape, dtype=np.float32)
  image = cv2.GaussianBlur(image, (3, 3), 0.6)
  return np.clip(image + 0.5, 0, 255).astype(np.uint8), c.label

"""Each official training loop, step for step, against the project's jitted train step.

For every recipe family a literal rewrite of the official PyTorch training loop (read
from the official repositories: criterion, FullModel, optimizer construction with its
parameter groups, the learning-rate calls where the official loop makes them) runs a
few iterations from random weights; the same weights, converted with hrnet_jax.convert,
go through the project's jitted step (`hrnet_jax.training.step`, the task's loss, the
optimizer of `hrnet_jax.training.optim` built from the config) on the same batches.
Losses, the learning rate of each iteration, parameters and BatchNorm running
statistics must agree.

  seg CE     HRNet-Semantic-Segmentation `pytorch-v1.1`: weighted CrossEntropy,
             SGD, `adjust_learning_rate` after `optimizer.step()`.
  seg OHEM   the same loop with OhemCrossEntropy.
  OCR        `HRNet-OCR` branch: [aux, out] with BALANCE_WEIGHTS [0.4, 1],
             NONBACKBONE_KEYWORDS ['cls', 'aux', 'ocr'] x NONBACKBONE_MULT 10.
  cls        HRNet-Image-Classification: CrossEntropyLoss, SGD Nesterov, wd,
             MultiStepLR built with last_epoch - 1 and stepped at each epoch's start.
  pose       deep-high-resolution-net.pytorch: JointsMSELoss(use_target_weight), Adam,
             MultiStepLR stepped at each epoch's start.

OHEM, OCR and pose also run with both frameworks in float64 (`precision`): there the
float32 noise that those loops amplify is gone and every quantity is asserted.

The epochs are 2 iterations long and the schedules short (poly over 8 iterations,
milestones at epochs 2 and 3) so every schedule changes inside the test. The OCR head's
Dropout2d is switched off on both sides (random masks cannot match across frameworks).
The worst differences measured here are in docs/training.md ("Parity with the official
trainers"); `-s` prints them.
"""
import contextlib
import functools
import importlib.util
import os
import types

import flax
import jax
import numpy as np
import optax
import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from hrnet_jax import convert
from hrnet_jax import tasks
from hrnet_jax.conversion import keymap
from hrnet_jax.models import model_options_dict
from hrnet_jax.training import optim
from hrnet_jax.training import sharding
from hrnet_jax.training import step as ts
from hrnet_jax.training import trainer

import convert_testlib as lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANT = 'hrnet_w18_small_v1'
EPOCH_ITERS = 2
LOSS_TOL = 1e-5           # relative
PARAM_TOL = 1e-4          # relative to each variable's largest entry
UPDATE_TOL = 1e-3         # the change training made, relative to the largest change
MEAN = (0.485, 0.456, 0.406)       # ImageNet RGB, as the official input transform
STD = (0.229, 0.224, 0.225)
CITYSCAPES_WEIGHTS = [0.8373, 0.918, 0.866, 1.0345, 1.0166, 0.9969, 0.9754, 1.0489, 0.8786,
                      1.0023, 0.9539, 0.9843, 1.1116, 0.9037, 1.0865, 1.0955, 1.0865,
                      1.1529, 1.0507]
MEASURED = {}             # recipe -> worst differences (printed at the end with -s)

# The official loops call lr_scheduler.step() before optimizer.step(); PyTorch >= 1.1
# warns about exactly the order being reproduced here.
pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings('ignore:Detected call of `lr_scheduler.step')]


@pytest.fixture(autouse=True, scope='module')
def _torch_setup():
  with lib.torch_threads(1):
    yield
  for name, worst in MEASURED.items():
    print(f'\n{name}: ' + ', '.join(f'{k} {v:.1e}' for k, v in worst.items()))


def load_config():
  spec = importlib.util.spec_from_file_location('default', os.path.join(ROOT, 'configs',
                                                                        'default.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


# ----------------------------------------------------------------------------
# Batches: learnable (labels follow the image), so gradients are coherent.
# ----------------------------------------------------------------------------
def _images(n, size, seed):
  rng = np.random.default_rng(seed)
  h, w = size
  small = rng.integers(0, 256, (n, h // 8, w // 8, 3))
  image = np.repeat(np.repeat(small, 8, 1), 8, 2) + rng.integers(0, 24, (n, h, w, 3))
  return np.clip(image, 0, 255).astype(np.uint8)


def _torch_input(image_u8):
  """The official input transform: RGB / 255, ImageNet mean/std, NCHW, in torch's
  default dtype (float64 inside `precision('float64')`)."""
  dtype = np.float64 if torch.get_default_dtype() == torch.float64 else np.float32
  x = image_u8.astype(dtype) / dtype(255.0)
  return lib.nchw((x - np.asarray(MEAN, dtype)) / np.asarray(STD, dtype))


@contextlib.contextmanager
def precision(name):
  """Both frameworks in float32 (as users train), or both in float64.

  float64 (jax_enable_x64, torch's default dtype, the converted model built with
  dtype/param_dtype float64) removes the float32 noise two frameworks' gradients differ
  by, which ill-conditioned loops (OCR, Adam) amplify past 1e-4: what stays is the
  loop itself. Yields the create_model overrides for the conversion.
  """
  if name == 'float32':
    yield {}
    return
  previous = torch.get_default_dtype()
  torch.set_default_dtype(torch.float64)
  try:
    with jax.enable_x64(True):
      yield {'dtype': 'float64', 'param_dtype': 'float64'}
  finally:
    torch.set_default_dtype(previous)


def seg_batches(count, num_classes, size=(64, 64), seed=0):
  out = []
  for i in range(count):
    image = _images(2, size, seed + i)
    label = (image[..., 0].astype(np.int32) * num_classes // 256).astype(np.int32)
    label[:, :6] = 255                          # an ignored band
    out.append({'image': image, 'label': label})
  return out


def cls_batches(count, num_classes, size=(64, 64), seed=0):
  out = []
  for i in range(count):
    image = _images(4, size, seed + i)
    label = (image[..., 0].mean((1, 2)).astype(np.int32) * num_classes // 256)
    out.append({'image': image, 'label': label.astype(np.int32)})
  return out


def pose_batches(count, joints, size=(64, 64), seed=0):
  out = []
  h, w = size[0] // 4, size[1] // 4
  yy, xx = np.mgrid[0:h, 0:w]
  for i in range(count):
    rng = np.random.default_rng(seed + i)
    image = _images(2, size, seed + i)
    cy, cx = rng.uniform(2, h - 2, (2, joints)), rng.uniform(2, w - 2, (2, joints))
    target = np.exp(-((yy[None, :, :, None] - cy[:, None, None]) ** 2 +
                      (xx[None, :, :, None] - cx[:, None, None]) ** 2) / 8.0)
    weight = (rng.uniform(size=(2, joints)) > 0.2).astype(np.float32)
    out.append({'image': image, 'target': target.astype(np.float32), 'target_weight': weight})
  return out


# ----------------------------------------------------------------------------
# The official code, rewritten literally (HRNet-Semantic-Segmentation).
# ----------------------------------------------------------------------------
class CrossEntropy(nn.Module):
  """lib/core/criterion.py CrossEntropy (HRNet-OCR form; pytorch-v1.1 is the
  single-output case with align_corners False)."""

  def __init__(self, ignore_label=-1, weight=None, align_corners=False,
               balance_weights=None):
    super().__init__()
    self.ignore_label = ignore_label
    self.align_corners = align_corners
    self.balance_weights = balance_weights
    self.criterion = nn.CrossEntropyLoss(weight=weight, ignore_index=ignore_label)

  def _forward(self, score, target):
    ph, pw = score.size(2), score.size(3)
    h, w = target.size(1), target.size(2)
    if ph != h or pw != w:
      score = F.interpolate(input=score, size=(h, w), mode='bilinear',
                            align_corners=self.align_corners)
    return self.criterion(score, target)

  def forward(self, score, target):
    if self.balance_weights is None:            # NUM_OUTPUTS == 1
      return self._forward(score, target)
    assert len(self.balance_weights) == len(score)
    return sum([w * self._forward(x, target) for (w, x) in zip(self.balance_weights, score)])


class OhemCrossEntropy(nn.Module):
  """lib/core/criterion.py OhemCrossEntropy."""

  def __init__(self, ignore_label=-1, thres=0.7, min_kept=100000, weight=None,
               align_corners=False, balance_weights=None):
    super().__init__()
    self.thresh = thres
    self.min_kept = max(1, min_kept)
    self.ignore_label = ignore_label
    self.align_corners = align_corners
    self.balance_weights = balance_weights
    self.criterion = nn.CrossEntropyLoss(weight=weight, ignore_index=ignore_label,
                                         reduction='none')
    self.kept = []

  def _upsample(self, score, target):
    ph, pw = score.size(2), score.size(3)
    h, w = target.size(1), target.size(2)
    if ph != h or pw != w:
      score = F.interpolate(input=score, size=(h, w), mode='bilinear',
                            align_corners=self.align_corners)
    return score

  def _ce_forward(self, score, target):
    return self.criterion(self._upsample(score, target), target)

  def _ohem_forward(self, score, target):
    score = self._upsample(score, target)
    pred = F.softmax(score, dim=1)
    pixel_losses = self.criterion(score, target).contiguous().view(-1)
    mask = target.contiguous().view(-1) != self.ignore_label
    tmp_target = target.clone()
    tmp_target[tmp_target == self.ignore_label] = 0
    pred = pred.gather(1, tmp_target.unsqueeze(1))
    pred, ind = pred.contiguous().view(-1,)[mask].contiguous().sort()
    min_value = pred[min(self.min_kept, pred.numel() - 1)]
    threshold = max(min_value, self.thresh)
    pixel_losses = pixel_losses[mask][ind]
    pixel_losses = pixel_losses[pred < threshold]
    self.kept.append((pixel_losses.numel(), pred.numel()))     # (kept, valid): test only
    return pixel_losses.mean()

  def forward(self, score, target):
    if self.balance_weights is None:
      return self._ohem_forward(score, target)
    functions = [self._ce_forward] * (len(self.balance_weights) - 1) + [self._ohem_forward]
    return sum([w * func(x, target)
                for (w, x, func) in zip(self.balance_weights, score, functions)])


class FullModel(nn.Module):
  """lib/utils/utils.py FullModel: the loss runs inside the (DataParallel) model."""

  def __init__(self, model, loss):
    super().__init__()
    self.model = model
    self.loss = loss

  def forward(self, inputs, labels):
    outputs = self.model(inputs)
    loss = self.loss(outputs, labels)
    return torch.unsqueeze(loss, 0), outputs


def adjust_learning_rate_v11(optimizer, base_lr, max_iters, cur_iters, power=0.9):
  """pytorch-v1.1 lib/utils/utils.py."""
  lr = base_lr * ((1 - float(cur_iters) / max_iters) ** (power))
  optimizer.param_groups[0]['lr'] = lr
  return lr


def adjust_learning_rate_ocr(optimizer, base_lr, max_iters, cur_iters, power=0.9,
                             nbb_mult=10):
  """HRNet-OCR lib/utils/utils.py (function.py passes no nbb_mult: always 10)."""
  lr = base_lr * ((1 - float(cur_iters) / max_iters) ** (power))
  optimizer.param_groups[0]['lr'] = lr
  if len(optimizer.param_groups) == 2:
    optimizer.param_groups[1]['lr'] = lr * nbb_mult
  return lr


def seg_optimizer(model, lr, momentum, wd, nesterov, keywords=(), mult=10):
  """tools/train.py: one group (pytorch-v1.1), or backbone / non-backbone groups matched
  by keyword in the parameter name (HRNet-OCR, NONBACKBONE_KEYWORDS)."""
  params_dict = dict(model.named_parameters())
  if keywords:
    bb_lr, nbb_lr, nbb_keys = [], [], set()
    for k, param in params_dict.items():
      if any(part in k for part in keywords):
        nbb_lr.append(param)
        nbb_keys.add(k)
      else:
        bb_lr.append(param)
    params = [{'params': bb_lr, 'lr': lr}, {'params': nbb_lr, 'lr': lr * mult}]
  else:
    nbb_keys = set()
    params = [{'params': [p for p in params_dict.values() if p.requires_grad], 'lr': lr}]
  optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=wd,
                              nesterov=nesterov)
  return optimizer, nbb_keys


def _record_grads(model, grads):
  """Test instrumentation: appends this iteration's gradients by name (if `grads`)."""
  if grads is not None:
    grads.append({name: p.grad.detach().numpy().copy()
                  for name, p in model.named_parameters() if p.grad is not None})


def seg_train(model, optimizer, batches, *, base_lr, num_iters, epoch_iters, adjust,
              grads=None):
  """lib/core/function.py train(), epoch after epoch until the batches run out.

  Returns the loss and the learning rates in effect (every group) of each iteration.
  `grads` (a list, test instrumentation) gets each iteration's gradients by name.
  """
  losses, lrs = [], []
  for epoch in range(-(-len(batches) // epoch_iters)):
    model.train()
    cur_iters = epoch * epoch_iters
    for i_iter in range(min(epoch_iters, len(batches) - cur_iters)):
      batch = batches[cur_iters + i_iter]
      images = _torch_input(batch['image'])
      labels = torch.from_numpy(batch['label']).long()
      lrs.append([g['lr'] for g in optimizer.param_groups])
      losses_, _ = model(images, labels)
      loss = losses_.mean()
      model.zero_grad()
      loss.backward()
      _record_grads(model, grads)
      optimizer.step()
      losses.append(loss.item())
      adjust(optimizer, base_lr, num_iters, i_iter + cur_iters)
  return losses, lrs


# ----------------------------------------------------------------------------
# Classification and pose loops (HRNet-Image-Classification,
# deep-high-resolution-net.pytorch): the scheduler steps at each epoch's start.
# ----------------------------------------------------------------------------
def joints_mse_loss(output, target, target_weight):
  """lib/core/loss.py JointsMSELoss(use_target_weight=True)."""
  criterion = nn.MSELoss(reduction='mean')
  batch_size, num_joints = output.size(0), output.size(1)
  heatmaps_pred = output.reshape((batch_size, num_joints, -1)).split(1, 1)
  heatmaps_gt = target.reshape((batch_size, num_joints, -1)).split(1, 1)
  loss = 0
  for idx in range(num_joints):
    heatmap_pred = heatmaps_pred[idx].squeeze()
    heatmap_gt = heatmaps_gt[idx].squeeze()
    loss += 0.5 * criterion(heatmap_pred.mul(target_weight[:, idx]),
                            heatmap_gt.mul(target_weight[:, idx]))
  return loss / num_joints


def epoch_train(model, optimizer, lr_scheduler, batches, *, epoch_iters, compute_loss,
                grads=None):
  """tools/train.py `for epoch: lr_scheduler.step(); train(...)` with function.py's
  `zero_grad(); backward(); step()` per iteration.

  `grads` (a list, test instrumentation): gets each iteration's gradients by name.
  """
  losses, lrs = [], []
  for epoch in range(len(batches) // epoch_iters):
    lr_scheduler.step()
    model.train()
    for i in range(epoch_iters):
      batch = batches[epoch * epoch_iters + i]
      lrs.append([g['lr'] for g in optimizer.param_groups])
      loss = compute_loss(model, batch)
      optimizer.zero_grad()
      loss.backward()
      _record_grads(model, grads)
      optimizer.step()
      losses.append(loss.item())
  return losses, lrs


def cls_loss(model, batch):
  output = model(_torch_input(batch['image']))
  return nn.CrossEntropyLoss()(output, torch.from_numpy(batch['label']).long())


def pose_loss(model, batch):
  output = model(_torch_input(batch['image']))
  dtype = torch.get_default_dtype()
  target = torch.from_numpy(np.ascontiguousarray(batch['target'].transpose(0, 3, 1, 2)))
  weight = torch.from_numpy(batch['target_weight'])[..., None]     # (B, J, 1)
  target, weight = target.to(dtype), weight.to(dtype)
  return joints_mse_loss(output, target, weight)


# ----------------------------------------------------------------------------
# The project's side.
# ----------------------------------------------------------------------------
def project_train(config, model, variables, batches):
  """The trainer's path on one device: state, init merge, task loss, jitted step."""
  mesh = sharding.make_mesh(config.mesh, devices=jax.devices()[:1])
  tx, schedule = optim.make_optimizer(config.optimizer, config.num_train_steps,
                                      head=config.model.head)
  state, shardings = ts.create_state(model, tx, seed=config.seed, mesh=mesh)
  state, report = ts.merge_pretrained(state, variables, source='torch')
  assert not report['fresh'] and not report['mismatched'], report
  task = tasks.task_for_config(config)
  grad_fn = ts.make_grad_fn(ts.make_loss_fn(model, task.make_loss(model, config)), 1)
  step = ts.jit_train_step(ts.make_train_step(grad_fn, tx, schedule), mesh, shardings)
  losses, lrs = [], []
  for batch in batches:
    state, metrics = step(state, sharding.global_batch(batch, mesh))
    losses.append(float(metrics['loss']))
    lrs.append(float(metrics['lr']))
  return losses, lrs, jax.device_get({'params': state.params,
                                      'batch_stats': state.batch_stats})


def _flat(tree):
  return {'/'.join(str(k) for k in p): np.asarray(v)
          for p, v in flax.traverse_util.flatten_dict(flax.core.unfreeze(tree)).items()}


def compare(name, ours, theirs, *, losses, lrs, start=None,
            check=('params', 'batch_stats'), param_tol=PARAM_TOL, update_tol=UPDATE_TOL):
  """Asserts the parity; records the worst differences.

  `start`: the variables before training; the update each side made (end - start) is
  compared too, relative to the largest update of the model (a stricter view: the
  parameters themselves are dominated by the shared initial values).
  `check`: the collections asserted (the others are measured only).
  """
  our_losses, ref_losses = losses
  our_lrs, ref_lrs = lrs
  np.testing.assert_allclose(our_lrs, [g[0] for g in ref_lrs], rtol=1e-6,
                             err_msg='learning rate per iteration')
  loss_err = np.max(np.abs(np.subtract(our_losses, ref_losses)) / np.abs(ref_losses))
  worst = MEASURED.setdefault(name, {})
  worst['loss'] = loss_err
  assert loss_err <= LOSS_TOL, f'{name}: losses {our_losses} vs {ref_losses}'
  for collection in ('params', 'batch_stats'):
    a, b = _flat(ours[collection]), _flat(theirs[collection])
    assert a.keys() == b.keys()
    rel = {k: np.abs(a[k] - b[k]).max() / max(np.abs(b[k]).max(), 1e-12) for k in a}
    key = max(rel, key=rel.get)
    worst[collection] = rel[key]
    checked = collection in check
    assert rel[key] <= param_tol or not checked, (
        f'{name}: {collection}/{key} differs by {rel[key]:.2e}')
    if start is not None:
      s = _flat(start[collection])
      scale = max(np.abs(b[k] - s[k]).max() for k in a)
      worst[f'{collection} update'] = max(np.abs((a[k] - s[k]) - (b[k] - s[k])).max()
                                          for k in a) / scale
      assert worst[f'{collection} update'] <= update_tol or not checked, (
          name, collection, worst)


def optimizer_on_reference_grads(name, config, conversion, grads, theirs, *, layout):
  """The project's optimizer (and schedule, groups) fed the reference's own gradients,
  iteration by iteration: the parameters must equal the official optimizer's to 1e-6.

  This isolates the update rule from the float32 noise of two frameworks' gradients.
  """
  head = config.model.head
  tx, _ = optim.make_optimizer(config.optimizer, config.num_train_steps, head=head)
  prefix = keymap.LAYOUTS[layout].outer
  entries = [e for e in keymap.entries(conversion.variables, head, keymap.LAYOUTS[layout])
             if e.collection == 'params']

  def to_flax(named):
    return flax.traverse_util.unflatten_dict(
        {e.path: keymap.to_flax(named[e.key[len(prefix):] if e.key[len(prefix):] in named
                                      else e.key], e.kind) for e in entries})

  params = conversion.variables['params']
  opt_state = tx.init(params)
  update = jax.jit(tx.update)
  for g in grads:
    updates, opt_state = update(to_flax(g), opt_state, params)
    params = optax.apply_updates(params, updates)
  got, want = _flat(params), _flat(theirs['params'])
  worst = max(np.abs(got[k] - want[k]).max() / np.abs(want[k]).max() for k in got)
  MEASURED.setdefault(name, {})['params, optimizer on the same gradients'] = worst
  assert worst <= 1e-6, (name, worst)


def torch_to_flax(state_dict, **overrides):
  return convert.convert({k: v.detach().clone() for k, v in state_dict.items()},
                         **overrides)


# ----------------------------------------------------------------------------
# Models.
# ----------------------------------------------------------------------------
def _calib(seed):
  return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def seg_net(num_classes, seed=1):
  """pytorch-v1.1 HRNetV2: bilinear fusion, align_corners False, BN momentum 0.01."""
  torch.manual_seed(seed)
  net = lib.backbone(VARIANT, upsample='bilinear', align_corners=False, bn_momentum=0.01)
  lib.add_seg_head(net, num_classes, momentum=0.01)
  net.forward = types.MethodType(lambda self, x: lib.seg_forward(self, x, False), net)
  lib.randomize(net, net, _calib(seed), seed=seed)
  return net


def ocr_net(num_classes, seed=2):
  """HRNet-OCR: align_corners True, BN momentum 0.1, outputs [aux, out]."""
  torch.manual_seed(seed)
  net = lib.backbone(VARIANT, upsample='bilinear', align_corners=True, bn_momentum=0.1)
  lib.add_ocr_head(net, num_classes)
  net.ocr_distri_head.conv_bn_dropout[2].p = 0.0     # Dropout2d off (see docstring)

  def forward(self, x):
    out, aux = lib.ocr_forward(self, x)
    return [aux, out]

  net.forward = types.MethodType(forward, net)
  lib.randomize(net, lambda x: net(x), _calib(seed), seed=seed)
  return net


def cls_net(num_classes, seed=3):
  torch.manual_seed(seed)
  net = timm.create_model(lib.timm_name(VARIANT), num_classes=num_classes)
  lib.randomize(net, net, _calib(seed), seed=seed)
  return net


def pose_net(joints, seed=4):
  torch.manual_seed(seed)
  net = lib.backbone(VARIANT, upsample='nearest', bn_momentum=0.1, single_output=True)
  lib.add_pose_head(net, joints)
  net.forward = types.MethodType(lambda self, x: lib.pose_forward(self, x), net)
  lib.randomize(net, net, _calib(seed), seed=seed)
  return net


def _same_model_as_config(model, config):
  """The converted model is the one the trainer builds from the config."""
  built = model_options_dict(trainer.build_model(config))
  assert {k: v for k, v in model_options_dict(model).items() if k in built} == built


# ----------------------------------------------------------------------------
# Segmentation (pytorch-v1.1): weighted CE and OHEM, poly after the step.
# ----------------------------------------------------------------------------
def _seg_config(ohem):
  config = load_config()
  config.task = 'segmentation'
  config.model.name = VARIANT
  config.model.head = 'seg'
  config.model.num_classes = 19
  config.loss.class_weights = tuple(CITYSCAPES_WEIGHTS)
  config.loss.chunk_images = 0                 # one GPU: the loss pools the batch
  config.loss.ohem = ohem
  config.loss.ohem_thresh = 0.02               # below p[min_kept]: min_kept decides
  config.loss.ohem_min_kept = 3000
  config.optimizer.learning_rate = 0.01
  config.optimizer.weight_decay = 5e-4
  config.num_train_steps = 4 * EPOCH_ITERS     # END_EPOCH 4 -> num_iters 8
  return config


@pytest.mark.slow
@pytest.mark.parametrize('ohem,dtype', [(False, 'float32'), (True, 'float32'),
                                        (True, 'float64')],
                         ids=['ce', 'ohem', 'ohem-float64'])
def test_seg_v11_loop(ohem, dtype):
  config = _seg_config(ohem)
  net = seg_net(19)
  with precision(dtype) as wide:
    net = net.to(torch.get_default_dtype())
    weight = torch.tensor(CITYSCAPES_WEIGHTS)
    if ohem:
      criterion = OhemCrossEntropy(ignore_label=255, thres=0.02, min_kept=3000,
                                   weight=weight)
    else:
      criterion = CrossEntropy(ignore_label=255, weight=weight)
    full = FullModel(net, criterion)
    conversion = torch_to_flax(full.state_dict(), **wide)
    config.model.update(wide)
    _same_model_as_config(conversion.model, config)
    batches = seg_batches(4, 19)

    optimizer, _ = seg_optimizer(full, 0.01, 0.9, 5e-4, False)
    grads = []
    ref = seg_train(full, optimizer, batches, base_lr=0.01,
                    num_iters=config.num_train_steps, epoch_iters=EPOCH_ITERS,
                    adjust=adjust_learning_rate_v11, grads=grads)
    if ohem:     # the threshold drops pixels: OHEM is not the plain mean of every pixel
      assert all(0 < kept < valid for kept, valid in criterion.kept), criterion.kept
    theirs = torch_to_flax(full.state_dict(), **wide).variables
    losses, lrs, ours = project_train(config, conversion.model, conversion.variables,
                                      batches)
    name = 'seg-v1.1 ' + ('OHEM' if ohem else 'weighted CE') + f' {dtype}'
    # OHEM puts the whole gradient on the 3000 least-probable pixels: in float32,
    # measured 1.0e-4 on parameters and 1.2e-3 on updates (weighted CE: 2e-7 and 9e-6),
    # with losses to 1e-7 and the optimizer exact on the same gradients; asserted there
    # with twice those, and in float64 with the 1e-4.
    tols = dict(param_tol=2e-4, update_tol=2.5e-3) if ohem and not wide else {}
    optimizer_on_reference_grads(name, config, conversion, grads, theirs,
                                 layout='model-prefix')
    compare(name, ours, theirs, losses=(losses, ref[0]), lrs=(lrs, ref[1]),
            start=conversion.variables, **tols)


# ----------------------------------------------------------------------------
# OCR (HRNet-OCR branch, PASCAL-Context OCR yaml): aux loss and the lr groups.
# ----------------------------------------------------------------------------
OCR_KEYWORDS = ('cls', 'aux', 'ocr')


def _ocr_config(num_classes):
  config = load_config()
  config.task = 'segmentation'
  config.model.name = VARIANT
  config.model.head = 'ocr'
  config.model.num_classes = num_classes
  config.loss.class_weights = ()
  config.loss.chunk_images = 0
  config.loss.aux_weight = 0.4
  config.optimizer.learning_rate = 0.001
  config.optimizer.weight_decay = 1e-4
  config.optimizer.nonbackbone_keywords = OCR_KEYWORDS
  config.optimizer.nonbackbone_mult = 10.0
  config.num_train_steps = 4 * EPOCH_ITERS
  return config


@pytest.mark.slow
@pytest.mark.parametrize('dtype', ['float32', 'float64'])
def test_ocr_loop_with_aux_loss_and_nonbackbone_lr_group(dtype):
  k = 59
  config = _ocr_config(k)
  net = ocr_net(k)
  with precision(dtype) as wide:
    net = net.to(torch.get_default_dtype())
    criterion = CrossEntropy(ignore_label=255, align_corners=True, balance_weights=[0.4, 1])
    full = FullModel(net, criterion)
    conversion = torch_to_flax(full.state_dict(), dropout=0.0, **wide)
    batches = seg_batches(2 * EPOCH_ITERS if wide else 3, k, seed=10)

    optimizer, nbb_keys = seg_optimizer(full, 0.001, 0.9, 1e-4, False,
                                        keywords=OCR_KEYWORDS, mult=10)
    # The groups: the project labels exactly the official non-backbone parameters.
    mult = optim.lr_multipliers(conversion.variables['params'], config.optimizer,
                                head='ocr')
    ours_10x = {k for k, v in _flat(mult).items() if float(v) == 10.0}
    entries = {'/'.join(e.path): e.key for e in keymap.entries(
        conversion.variables, 'ocr', keymap.LAYOUTS['model-prefix'])
               if e.collection == 'params'}
    assert {entries[k] for k in ours_10x} == nbb_keys
    assert {float(v) for v in _flat(mult).values()} == {1.0, 10.0}

    grads = []
    ref = seg_train(full, optimizer, batches, base_lr=0.001,
                    num_iters=config.num_train_steps, epoch_iters=EPOCH_ITERS,
                    adjust=adjust_learning_rate_ocr, grads=grads)
    assert all(abs(g[1] - 10 * g[0]) < 1e-12 for g in ref[1])
    theirs = torch_to_flax(full.state_dict(), **wide).variables
    losses, lrs, ours = project_train(config, conversion.model, conversion.variables,
                                      batches)
    # With these random weights the OCR head is ill-conditioned in float32: PyTorch's
    # own float32 gradients differ from its float64 ones by up to 4e-3 of a variable's
    # largest (conv_bn_dropout, the backbone BNs), so two float32 frameworks cannot
    # agree on the parameters to 1e-4, and the losses part past 1e-5 from the fourth
    # iteration. In float32 the loop asserts three iterations' losses and rates and
    # measures the rest; in float64 (four iterations) everything is asserted.
    name = f'OCR aux + lr groups {dtype}'
    optimizer_on_reference_grads(name, config, conversion, grads, theirs,
                                 layout='model-prefix')
    compare(name, ours, theirs, losses=(losses, ref[0]), lrs=(lrs, ref[1]),
            start=conversion.variables,
            check=('params', 'batch_stats') if wide else ())


# ----------------------------------------------------------------------------
# Classification: SGD Nesterov, wd 1e-4, MultiStepLR stepped at each epoch's start.
# ----------------------------------------------------------------------------
def _multistep_config(config, lr, milestones, epochs, semantics):
  config.optimizer.learning_rate = lr
  config.optimizer.schedule = 'multistep'
  config.optimizer.milestone_epochs = tuple(milestones)
  config.optimizer.steps_per_epoch = EPOCH_ITERS
  config.optimizer.step_factor = 0.1
  config.optimizer.multistep_semantics = semantics
  config.num_train_steps = epochs * EPOCH_ITERS
  return config


def _installed_torch_semantics():
  major, minor = (int(x) for x in torch.__version__.split('.')[:2])
  return 'torch1.1' if (major, minor) >= (1, 1) else 'torch1.0'


@pytest.mark.slow
def test_cls_loop_sgd_nesterov_multistep():
  k, milestones = 5, [2, 3]
  config = load_config()
  config.task = 'classification'
  config.model.name = VARIANT
  config.model.head = 'cls'
  config.model.num_classes = k
  config.loss.class_weights = ()
  config.loss.label_smoothing = 0.0            # the official criterion: plain CE
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = 1e-4
  # LR 0.05 is for batch 128. On 4 learnable images it empties the loss in one step;
  # 5e-4 keeps each step's loss change ~10%, so float32 noise in an update (~1e-5 of
  # it) stays ~1e-6 of the loss instead of being multiplied by a halving loss.
  lr = 5e-4
  _multistep_config(config, lr, milestones, 3, _installed_torch_semantics())
  net = cls_net(k)
  conversion = torch_to_flax(net.state_dict())
  _same_model_as_config(conversion.model, config)
  batches = cls_batches(3 * EPOCH_ITERS, k)

  # lib/utils/utils.py get_optimizer + tools/train.py (BEGIN_EPOCH 0 -> last_epoch - 1).
  optimizer = torch.optim.SGD(filter(lambda p: p.requires_grad, net.parameters()), lr=lr,
                              momentum=0.9, weight_decay=1e-4, nesterov=True)
  last_epoch = 0
  lr_scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, 0.1,
                                                      last_epoch - 1)
  grads = []
  ref = epoch_train(net, optimizer, lr_scheduler, batches, epoch_iters=EPOCH_ITERS,
                    compute_loss=cls_loss, grads=grads)
  assert len(set(g[0] for g in ref[1])) == 3        # every milestone inside the test
  theirs = torch_to_flax(net.state_dict()).variables
  losses, lrs, ours = project_train(config, conversion.model, conversion.variables, batches)
  name = 'cls SGD Nesterov + MultiStepLR'
  optimizer_on_reference_grads(name, config, conversion, grads, theirs, layout='plain')
  compare(name, ours, theirs, losses=(losses, ref[0]), lrs=(lrs, ref[1]),
          start=conversion.variables)


# ----------------------------------------------------------------------------
# Pose: Adam, MultiStepLR stepped at each epoch's start, JointsMSELoss.
# ----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize('dtype', ['float32', 'float64'])
def test_pose_loop_adam_multistep(dtype):
  joints, milestones = 17, [2, 3]
  config = load_config()
  config.task = 'keypoints'
  config.model.name = VARIANT
  config.model.head = 'pose'
  config.model.num_classes = joints
  config.optimizer.name = 'adam'
  config.optimizer.b1, config.optimizer.b2, config.optimizer.eps = 0.9, 0.999, 1e-8
  config.optimizer.weight_decay = 0.0          # the official Adam path passes no wd
  _multistep_config(config, 1e-3, milestones, 3, _installed_torch_semantics())
  net = pose_net(joints)
  with precision(dtype) as wide:
    net = net.to(torch.get_default_dtype())
    conversion = torch_to_flax(net.state_dict(), **wide)
    config.model.update(wide)
    _same_model_as_config(conversion.model, config)
    batches = pose_batches(3 * EPOCH_ITERS, joints)

    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)      # get_optimizer, 'adam'
    lr_scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, 0.1,
                                                        last_epoch=-1)
    grads = []
    ref = epoch_train(net, optimizer, lr_scheduler, batches, epoch_iters=EPOCH_ITERS,
                      compute_loss=pose_loss, grads=grads)
    assert len(set(g[0] for g in ref[1])) == 3
    theirs = torch_to_flax(net.state_dict(), **wide).variables
    losses, lrs, ours = project_train(config, conversion.model, conversion.variables,
                                      batches)
    # Adam divides each gradient by its own running magnitude, so an entry whose
    # gradient sits at the float32 noise floor of the two frameworks (~1e-5 of its
    # variable's largest: dead units of the 2x2 lowest branch, cancelling sums) moves by
    # up to lr in a direction of its own on each side; over six iterations that reaches
    # ~1e-3 of a few variables. So in float32 the loop asserts the losses, the rates and
    # the BatchNorm statistics and measures the parameters; in float64, where that noise
    # floor is ~1e-14, everything is asserted.
    name = f'pose Adam + MultiStepLR {dtype}'
    optimizer_on_reference_grads(name, config, conversion, grads, theirs, layout='plain')
    compare(name, ours, theirs, losses=(losses, ref[0]), lrs=(lrs, ref[1]),
            start=conversion.variables,
            check=('params', 'batch_stats') if wide else ('batch_stats',))


# ----------------------------------------------------------------------------
# The schedules alone, longer, against the official calls (no model).
# ----------------------------------------------------------------------------
def _torch10_multistep(optimizer, milestones, gamma):
  """MultiStepLR as PyTorch <= 1.0 built it: its __init__ ran step(last_epoch + 1) and
  then reset last_epoch to -1, so the first step() at epoch 0 gives epoch 0."""
  scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma)
  scheduler.last_epoch = -1
  return scheduler


@pytest.mark.parametrize('semantics', ['torch1.0', 'torch1.1'])
def test_multistep_epoch_mapping(semantics):
  epochs, epoch_iters, milestones = 8, 3, [3, 5, 6]
  param = torch.nn.Parameter(torch.zeros(1))
  optimizer = torch.optim.SGD([param], lr=0.05)
  if semantics == 'torch1.0':
    scheduler = _torch10_multistep(optimizer, milestones, 0.1)
  else:
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, 0.1, -1)
  expected = []
  for _ in range(epochs):
    scheduler.step()
    expected += [optimizer.param_groups[0]['lr']] * epoch_iters
  config = load_config().optimizer
  config.learning_rate = 0.05
  config.schedule = 'multistep'
  config.milestone_epochs = tuple(milestones)
  config.steps_per_epoch = epoch_iters
  config.step_factor = 0.1
  config.multistep_semantics = semantics
  schedule = optim.make_schedule(config, epochs * epoch_iters)
  got = [float(schedule(i)) for i in range(epochs * epoch_iters)]
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  first_drop = 3 if semantics == 'torch1.0' else 2            # epoch of the first 0.005
  assert got[first_drop * epoch_iters] == pytest.approx(0.005)
  assert got[first_drop * epoch_iters - 1] == pytest.approx(0.05)


def test_poly_schedule_is_one_iteration_behind_as_the_official_loop():
  num_iters = 50
  param = torch.nn.Parameter(torch.zeros(1))
  optimizer = torch.optim.SGD([{'params': [param], 'lr': 0.01}], lr=0.01)
  expected = []
  for i_iter in range(num_iters):
    expected.append(optimizer.param_groups[0]['lr'])      # in effect for optimizer.step()
    adjust_learning_rate_v11(optimizer, 0.01, num_iters, i_iter)
  schedule = optim.make_schedule(load_config().optimizer, num_iters)
  got = [float(schedule(i)) for i in range(num_iters)]
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  assert got[0] == got[1] == pytest.approx(0.01) and got[2] < 0.9999 * got[1]

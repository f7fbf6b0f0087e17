"""Optimizers, learning-rate schedules and parameter groups of the official recipes.

Every schedule is a function of `count`, the number of updates done so far; its value is
the learning rate of update `count` (metrics['lr'] of that step). tests/test_recipe_parity.py
runs each official loop against the project's step; docs/training.md has the figures.

Schedules (`config.optimizer.schedule`), each as the official loop steps it:

'poly' -- HRNet-Semantic-Segmentation, both branches (`pytorch-v1.1`, `HRNet-OCR`),
  lib/core/function.py train():
      model.zero_grad(); loss.backward(); optimizer.step()
      lr = adjust_learning_rate(optimizer, base_lr, num_iters, i_iter + cur_iters)
  adjust_learning_rate (lib/utils/utils.py) sets base_lr * (1 - it / num_iters)^power
  AFTER the step of iteration `it`. Iteration 0 runs at the rate the optimizer was built
  with (TRAIN.LR) and iteration k >= 1 at the poly value of k - 1:
      rate(count) = lr * (1 - max(count - 1, 0) / num_train_steps)^power.

'multistep' -- HRNet-Image-Classification and deep-high-resolution-net.pytorch
  tools/train.py (HRNet-Facial-Landmark-Detection the same):
      lr_scheduler = MultiStepLR(optimizer, LR_STEP, LR_FACTOR, last_epoch - 1)
      for epoch in range(begin_epoch, END_EPOCH):
          lr_scheduler.step()
          train(...)
  The rate is constant over each epoch of `steps_per_epoch` updates; epoch e runs at
  lr * step_factor^(number of milestone_epochs m <= e + offset), by
  `multistep_semantics`:
    'torch1.0' (offset 0, the default): PyTorch <= 1.0. Its scheduler constructor took a
      step and then reset last_epoch to -1, so the loop's step() at epoch 0 gave epoch 0
      and the rate drops at the start of each milestone epoch (ImageNet: epochs 30-59 at
      0.005). The published models were trained so (the classification README asks for
      PyTorch 0.4.1; the pose code dates from PyTorch 1.0), and it is what LR_STEP means.
      It is also what a current PyTorch gives with step() at the end of each epoch.
    'torch1.1' (offset 1): PyTorch >= 1.1, whose constructor's step already counts, so
      the official loop's step() at epoch 0 gives epoch 1 and every drop comes one epoch
      early. For matching a run of the unchanged official code on a current PyTorch.
  Epoch e covers updates [e * steps_per_epoch, (e + 1) * steps_per_epoch).

'step' -- lr * step_factor^k after k of `step_boundaries` (in updates, count >= b):
  any other piecewise-constant schedule.

Warm-up: no official HRNet recipe has one. `warmup_steps` > 0 ramps linearly from 0 to
the base rate over that many updates; the schedule then continues at its own count.

Optimizers (`config.optimizer.name`):
  'sgd'  -- torch.optim.SGD: weight decay added to the gradient before momentum
            (coupled), the momentum buffer starts at the first gradient, no dampening,
            Nesterov optional. Every segmentation and classification recipe.
  'adam' -- torch.optim.Adam: b1, b2, eps added to the bias-corrected sqrt(v); coupled
            weight decay if `weight_decay` > 0 (the official pose and landmark Adam
            passes none). The pose and landmark recipes.

Parameter groups. torch.optim applies a group's learning rate to the group's final step
only (momentum buffers and Adam moments do not depend on it), so a group with lr x m is
exactly the common update scaled by m afterwards. Multipliers of a variable:
  `nonbackbone_keywords` x `nonbackbone_mult`: HRNet-OCR tools/train.py puts every
    parameter whose name contains one of TRAIN.NONBACKBONE_KEYWORDS in a second group at
    TRAIN.LR * TRAIN.NONBACKBONE_MULT, and adjust_learning_rate keeps that group at 10x
    the poly rate. The names matched are the official PyTorch names of the variables
    (hrnet_jax.conversion.keymap, with the segmentation trainer's `model.` prefix), so
    the yamls' keywords carry over as they are (['cls', 'aux', 'ocr'] selects the whole
    OCR head). The official adjust_learning_rate is called without nbb_mult and uses its
    default 10 from the second iteration on whatever NONBACKBONE_MULT says; every
    official yaml sets 10, and here the configured multiplier holds throughout.
  `backbone_lr_mult`: every variable of the backbone (stem, layer1, transitions,
    stages) -- a gentler rate for fine-tuning.
  `freeze_backbone`: the backbone gets no update and no weight decay
    (optax.set_to_zero), as parameters with requires_grad=False left out of a torch
    optimizer; its BatchNorm statistics still update in training mode, as in PyTorch.
"""
from __future__ import annotations

from typing import Any, Callable

from absl import logging
import jax
import jax.numpy as jnp
import optax

SCHEDULES = ('poly', 'multistep', 'step')
OPTIMIZERS = ('sgd', 'adam')
MULTISTEP_SEMANTICS = {'torch1.0': 0, 'torch1.1': 1}   # -> epoch offset


def _poly_after_step(lr: float, power: float, num_iters: int) -> optax.Schedule:
  def schedule(count):
    it = jnp.maximum(jnp.asarray(count, jnp.float32) - 1.0, 0.0)
    frac = 1.0 - it / float(num_iters)
    # XLA's CPU pow(0, 0.9) is NaN under jit: the end of the schedule is 0 by hand.
    safe = jnp.where(frac > 0, frac, 1.0)
    return jnp.where(frac > 0, lr * safe ** power, 0.0)
  return schedule


def _piecewise(lr: float, factor: float, boundaries) -> optax.Schedule:
  """lr * factor^(number of boundaries <= count); repeated boundaries count twice."""
  bounds = jnp.asarray(sorted(int(b) for b in boundaries) or [0], jnp.int32)
  active = bool(len(boundaries))

  def schedule(count):
    if not active:
      return jnp.asarray(lr, jnp.float32)
    k = jnp.sum(jnp.asarray(count, jnp.int32) >= bounds)
    return lr * jnp.asarray(factor, jnp.float32) ** k.astype(jnp.float32)
  return schedule


def multistep_boundaries(opt_config: Any) -> tuple[int, ...]:
  """The update counts where the 'multistep' schedule drops (see the module docstring)."""
  semantics = opt_config.get('multistep_semantics', 'torch1.0')
  if semantics not in MULTISTEP_SEMANTICS:
    raise ValueError(f'config.optimizer.multistep_semantics={semantics!r}: use '
                     f"{' or '.join(map(repr, MULTISTEP_SEMANTICS))}.")
  steps = int(opt_config.get('steps_per_epoch', 0) or 0)
  if steps <= 0:
    raise ValueError(f'config.optimizer.steps_per_epoch={steps}: the multistep schedule '
                     'needs the number of updates per epoch (training images // batch).')
  offset = MULTISTEP_SEMANTICS[semantics]
  return tuple(max(int(m) - offset, 0) * steps
               for m in opt_config.get('milestone_epochs', ()))


def make_schedule(opt_config: Any, num_train_steps: int) -> optax.Schedule:
  """The learning rate of update `count` (see the module docstring)."""
  lr = float(opt_config.learning_rate)
  warmup = int(opt_config.get('warmup_steps', 0) or 0)
  name = opt_config.schedule
  if name == 'poly':
    main = _poly_after_step(lr, float(opt_config.poly_power), int(num_train_steps))
  elif name == 'multistep':
    main = _piecewise(lr, float(opt_config.step_factor), multistep_boundaries(opt_config))
  elif name == 'step':
    main = _piecewise(lr, float(opt_config.step_factor), opt_config.step_boundaries)
  else:
    raise ValueError(f'config.optimizer.schedule={name!r}: use '
                     f"{', '.join(map(repr, SCHEDULES))}.")
  if warmup <= 0:
    return main
  return optax.join_schedules(
      [optax.linear_schedule(0.0, lr, warmup), lambda c: main(c + warmup)], [warmup])


# ----------------------------------------------------------------------------
# Parameter groups.
# ----------------------------------------------------------------------------
def _path(path) -> tuple[str, ...]:
  return tuple(str(getattr(k, 'key', getattr(k, 'name', k))) for k in path)


def official_names(params: Any, head: str) -> dict[tuple[str, ...], str]:
  """Flax parameter path -> its official PyTorch name (the layout of the head's repo)."""
  # pylint: disable=g-import-not-at-top  (only when keywords are used)
  from hrnet_jax.conversion import keymap
  from hrnet_jax.conversion.errors import ConversionError
  import flax
  layout = keymap.LAYOUTS[keymap.DEFAULT_LAYOUT.get(head, 'plain')]
  # Only real leaves (inside optax.multi_transform, masked-out ones are MaskedNodes).
  flat = {_path(p): leaf for p, leaf in jax.tree_util.tree_leaves_with_path(params)}
  try:
    found = keymap.entries({'params': flax.traverse_util.unflatten_dict(flat)}, head, layout)
  except (ConversionError, KeyError) as e:
    raise ValueError(f'config.optimizer.nonbackbone_keywords match official PyTorch '
                     f'parameter names, which this model ({head!r} head) does not have: '
                     f'{e}') from None
  return {e.path: e.key for e in found}


def _has_groups(opt_config: Any) -> bool:
  return bool(opt_config.get('nonbackbone_keywords', ())) or (
      float(opt_config.get('backbone_lr_mult', 1.0)) != 1.0)


def lr_multipliers(params: Any, opt_config: Any, *, head: str) -> Any:
  """A tree like `params` of each variable's learning-rate multiplier (python floats)."""
  keywords = tuple(opt_config.get('nonbackbone_keywords', ()) or ())
  nbb_mult = float(opt_config.get('nonbackbone_mult', 1.0))
  bb_mult = float(opt_config.get('backbone_lr_mult', 1.0))
  names = official_names(params, head) if keywords else {}

  def one(path, _):
    path = _path(path)
    mult = 1.0
    if keywords and any(word in names[path] for word in keywords):
      mult *= nbb_mult
    if path[0] == 'backbone':
      mult *= bb_mult
    return mult

  return jax.tree_util.tree_map_with_path(one, params)


def _scale_by_multipliers(multipliers: Callable[[Any], Any]) -> optax.GradientTransformation:
  """Scales each update by its group's multiplier (computed from the tree's paths)."""

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None):
    del params
    mults = multipliers(updates)
    return jax.tree.map(lambda u, m: u if m == 1.0 else u * jnp.asarray(m, u.dtype),
                        updates, mults), state

  return optax.GradientTransformation(init_fn, update_fn)


def _backbone_labels(params: Any) -> Any:
  return jax.tree_util.tree_map_with_path(
      lambda p, _: 'frozen' if _path(p)[0] == 'backbone' else 'train', params)


def describe_groups(params: Any, opt_config: Any, *, head: str) -> str:
  """One log line: how many variables (and values) each learning-rate multiplier covers."""
  counts: dict[Any, list[int]] = {}
  frozen = bool(opt_config.get('freeze_backbone', False))
  mults = lr_multipliers(params, opt_config, head=head)
  for (path, leaf), mult in zip(jax.tree_util.tree_leaves_with_path(params),
                                jax.tree.leaves(mults)):
    key = 'frozen' if frozen and _path(path)[0] == 'backbone' else mult
    entry = counts.setdefault(key, [0, 0])
    entry[0] += 1
    entry[1] += int(leaf.size)
  parts = [f'{"frozen" if k == "frozen" else f"lr x {k:g}"}: {n} variables ({size:,} values)'
           for k, (n, size) in sorted(counts.items(), key=lambda kv: str(kv[0]))]
  return 'Parameter groups: ' + '; '.join(parts)


# ----------------------------------------------------------------------------
# The optimizer.
# ----------------------------------------------------------------------------
def make_optimizer(opt_config: Any, num_train_steps: int, *, head: str = 'seg'
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """(the optimizer of `config.optimizer`, its base schedule); `head` names the model's
  head (config.model.head) for the keyword groups."""
  name = opt_config.name
  schedule = make_schedule(opt_config, num_train_steps)
  parts = []
  if opt_config.weight_decay:
    parts.append(optax.add_decayed_weights(float(opt_config.weight_decay)))
  if name == 'sgd':
    parts.append(optax.sgd(schedule, momentum=float(opt_config.momentum) or None,
                           nesterov=bool(opt_config.nesterov)))
  elif name == 'adam':
    parts.append(optax.adam(schedule, b1=float(opt_config.get('b1', 0.9)),
                            b2=float(opt_config.get('b2', 0.999)),
                            eps=float(opt_config.get('eps', 1e-8))))
  else:
    raise ValueError(f'config.optimizer.name={name!r}: use '
                     f"{' or '.join(map(repr, OPTIMIZERS))}.")
  if _has_groups(opt_config):
    parts.append(_scale_by_multipliers(
        lambda tree: lr_multipliers(tree, opt_config, head=head)))
  tx = optax.chain(*parts)
  if opt_config.get('freeze_backbone', False):
    tx = optax.multi_transform({'train': tx, 'frozen': optax.set_to_zero()},
                               _backbone_labels)
  return tx, schedule


def log_groups(params: Any, opt_config: Any, *, head: str) -> None:
  if _has_groups(opt_config) or opt_config.get('freeze_backbone', False):
    logging.info(describe_groups(params, opt_config, head=head))

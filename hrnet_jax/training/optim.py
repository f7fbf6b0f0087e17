"""Optimizer and learning-rate schedules of the official recipes.

torch.optim.SGD semantics: weight decay is added to the gradient before momentum
(coupled), the momentum buffer starts at the first gradient, Nesterov optional.
The schedule is evaluated at the number of updates done so far, so the first update
uses the base learning rate, as the official `adjust_learning_rate` before each step.
"""
from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import optax


def make_schedule(opt_config: Any, num_train_steps: int) -> optax.Schedule:
  """'poly': lr * (1 - it / max_it)^power per iteration; 'step': lr * factor^k."""
  lr = float(opt_config.learning_rate)
  warmup = int(opt_config.get('warmup_steps', 0) or 0)
  if opt_config.schedule == 'poly':
    # lr * (1 - count / max_it)^power, clipped at max_it, as the official
    # adjust_learning_rate evaluated before each update.
    poly = optax.polynomial_schedule(init_value=lr, end_value=0.0,
                                     power=float(opt_config.poly_power),
                                     transition_steps=int(num_train_steps))

    def main(count):
      # Under jit, XLA's CPU pow(0, 0.9) is NaN: the end of the schedule is 0 by hand.
      return jnp.where(jnp.asarray(count) < num_train_steps, poly(count), 0.0)
  elif opt_config.schedule == 'step':
    boundaries = {int(b): float(opt_config.step_factor) for b in opt_config.step_boundaries}
    main = optax.piecewise_constant_schedule(lr, boundaries)
  else:
    raise ValueError(f"config.optimizer.schedule={opt_config.schedule!r}: use 'poly' or "
                     "'step'.")
  if warmup <= 0:
    return main
  return optax.join_schedules(
      [optax.linear_schedule(0.0, lr, warmup), lambda c: main(c + warmup)], [warmup])


def make_optimizer(opt_config: Any, num_train_steps: int
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """(SGD with coupled weight decay, or Adam, and its schedule) from `config.optimizer`."""
  if opt_config.name not in ('sgd', 'adam'):
    raise ValueError(f"config.optimizer.name={opt_config.name!r}: 'sgd' (segmentation, "
                     "classification) or 'adam' (pose and landmarks) are implemented.")
  schedule = make_schedule(opt_config, num_train_steps)
  if opt_config.name == 'adam':
    # torch.optim.Adam of the pose and landmark recipes, which set no weight decay.
    return optax.adam(schedule, b1=float(opt_config.get('b1', 0.9)),
                      b2=float(opt_config.get('b2', 0.999)),
                      eps=float(opt_config.get('eps', 1e-8))), schedule
  parts = []
  if opt_config.weight_decay:
    parts.append(optax.add_decayed_weights(float(opt_config.weight_decay)))
  parts.append(optax.sgd(schedule, momentum=float(opt_config.momentum) or None,
                         nesterov=bool(opt_config.nesterov)))
  return optax.chain(*parts), schedule

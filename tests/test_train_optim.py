"""SGD and schedules against torch.optim.SGD driven as the official trainers drive it."""
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
import torch

from hrnet_jax.training import optim


def _opt_config(**kw):
  cfg = ml_collections.ConfigDict(dict(
      name='sgd', learning_rate=0.01, momentum=0.9, nesterov=False, weight_decay=5e-4,
      schedule='poly', poly_power=0.9, warmup_steps=0, step_boundaries=(), step_factor=0.1))
  cfg.update(kw)
  return cfg


def _apply(cfg, num_steps, w0, grads):
  """The project's optimizer from `cfg` run over `grads`, one update each, from w0."""
  tx, _ = optim.make_optimizer(cfg, num_steps)
  params = {'w': jnp.asarray(w0)}
  state = tx.init(params)
  for g in grads:
    updates, state = tx.update({'w': jnp.asarray(g)}, state, params)
    params = optax.apply_updates(params, updates)
  return params['w']


@pytest.mark.parametrize('nesterov', [False, True])
def test_sgd_matches_torch_over_steps_with_poly_lr(nesterov):
  max_it = 10
  cfg = _opt_config(nesterov=nesterov)
  rng = np.random.default_rng(0)
  w0 = rng.normal(size=(4, 3)).astype(np.float32)
  grads = [rng.normal(size=(4, 3)).astype(np.float32) for _ in range(4)]

  tw = torch.nn.Parameter(torch.from_numpy(w0.copy()))
  topt = torch.optim.SGD([tw], lr=0.01, momentum=0.9, weight_decay=5e-4, nesterov=nesterov)
  for it, g in enumerate(grads):
    tw.grad = torch.from_numpy(g)
    topt.step()
    # The official adjust_learning_rate (lib/core/function.py): after the step.
    for group in topt.param_groups:
      group['lr'] = 0.01 * (1 - it / max_it) ** 0.9

  np.testing.assert_allclose(_apply(cfg, max_it, w0, grads), tw.detach().numpy(),
                             rtol=1e-6, atol=1e-7)


def test_poly_and_step_schedules():
  poly = optim.make_schedule(_opt_config(), 100)   # update k >= 1 runs at poly(k - 1)
  np.testing.assert_allclose([poly(i) for i in (0, 1, 50, 100, 101)],
                             [0.01, 0.01] + [0.01 * (1 - (i - 1) / 100) ** 0.9
                                             for i in (50, 100, 101)], rtol=1e-6)
  step = optim.make_schedule(_opt_config(schedule='step', learning_rate=0.05,
                                         step_boundaries=(3, 6)), 10)
  np.testing.assert_allclose([step(i) for i in (0, 2, 3, 5, 6, 9)],
                             [0.05, 0.05, 0.005, 0.005, 0.0005, 0.0005], rtol=1e-6)
  warm = optim.make_schedule(_opt_config(warmup_steps=4), 100)
  np.testing.assert_allclose([warm(i) for i in (0, 2, 4, 50)],
                             [0.0, 0.005, 0.01 * (1 - 3 / 100) ** 0.9,
                              0.01 * (1 - 49 / 100) ** 0.9], rtol=1e-6)


def test_unknown_schedule_and_optimizer_fail_clearly():
  with pytest.raises(ValueError, match="schedule='cosine'"):
    optim.make_schedule(_opt_config(schedule='cosine'), 10)
  with pytest.raises(ValueError, match="name='rmsprop'"):
    optim.make_optimizer(_opt_config(name='rmsprop'), 10)
  with pytest.raises(ValueError, match='steps_per_epoch=0'):
    optim.make_schedule(_opt_config(schedule='multistep', milestone_epochs=(3,),
                                    steps_per_epoch=0), 10)


def _tree(rng):
  return {'backbone': {'conv1': {'kernel': rng.normal(size=(3, 3, 2, 4)).astype(np.float32)}},
          'head': {'classifier': {'kernel': rng.normal(size=(4, 5)).astype(np.float32),
                                  'bias': rng.normal(size=(5,)).astype(np.float32)}}}


def _one_update(cfg, params, grads):
  tx, _ = optim.make_optimizer(cfg, 10)
  updates, _ = tx.update(grads, tx.init(params), params)
  return updates


def test_backbone_lr_mult_and_freeze_backbone():
  rng = np.random.default_rng(1)
  params, grads = _tree(rng), _tree(rng)
  plain = _one_update(_opt_config(), params, grads)
  gentle = _one_update(_opt_config(backbone_lr_mult=0.1), params, grads)
  np.testing.assert_allclose(gentle['backbone']['conv1']['kernel'],
                             0.1 * plain['backbone']['conv1']['kernel'], rtol=1e-6)
  np.testing.assert_array_equal(gentle['head']['classifier']['kernel'],
                                plain['head']['classifier']['kernel'])
  frozen = _one_update(_opt_config(freeze_backbone=True), params, grads)
  # No update and no weight decay on the backbone, as a parameter left out of torch's
  # optimizer; the head as before.
  np.testing.assert_array_equal(frozen['backbone']['conv1']['kernel'], 0.0)
  np.testing.assert_array_equal(frozen['head']['classifier']['bias'],
                                plain['head']['classifier']['bias'])


def test_adam_matches_torch_adam_with_multistep():
  cfg = _opt_config(name='adam', weight_decay=0.0, learning_rate=1e-3, schedule='multistep',
                    milestone_epochs=(1, 2), steps_per_epoch=2)
  rng = np.random.default_rng(2)
  w0 = rng.normal(size=(5, 3)).astype(np.float32)
  grads = [rng.normal(size=(5, 3)).astype(np.float32) for _ in range(6)]
  tw = torch.nn.Parameter(torch.from_numpy(w0.copy()))
  topt = torch.optim.Adam([tw], lr=1e-3)
  for it, g in enumerate(grads):
    # PyTorch <= 1.0 (the default semantics): epoch e runs at lr * 0.1^(milestones <= e).
    topt.param_groups[0]['lr'] = 1e-3 * 0.1 ** sum(m <= it // 2 for m in (1, 2))
    tw.grad = torch.from_numpy(g)
    topt.step()
  np.testing.assert_allclose(_apply(cfg, 6, w0, grads), tw.detach().numpy(),
                             rtol=1e-6, atol=1e-7)

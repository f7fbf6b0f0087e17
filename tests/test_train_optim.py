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
    # The official adjust_learning_rate, called before every step.
    for group in topt.param_groups:
      group['lr'] = 0.01 * (1 - it / max_it) ** 0.9
    tw.grad = torch.from_numpy(g)
    topt.step()

  tx, _ = optim.make_optimizer(cfg, max_it)
  params = {'w': jnp.asarray(w0)}
  state = tx.init(params)
  for g in grads:
    updates, state = tx.update({'w': jnp.asarray(g)}, state, params)
    params = optax.apply_updates(params, updates)
  np.testing.assert_allclose(params['w'], tw.detach().numpy(), rtol=1e-6, atol=1e-7)


def test_poly_and_step_schedules():
  poly = optim.make_schedule(_opt_config(), 100)
  np.testing.assert_allclose([poly(i) for i in (0, 50, 99, 100)],
                             [0.01 * (1 - i / 100) ** 0.9 for i in (0, 50, 99, 100)],
                             rtol=1e-6)
  step = optim.make_schedule(_opt_config(schedule='step', learning_rate=0.05,
                                         step_boundaries=(3, 6)), 10)
  np.testing.assert_allclose([step(i) for i in (0, 2, 3, 5, 6, 9)],
                             [0.05, 0.05, 0.005, 0.005, 0.0005, 0.0005], rtol=1e-6)
  warm = optim.make_schedule(_opt_config(warmup_steps=4), 100)
  np.testing.assert_allclose([warm(i) for i in (0, 2, 4, 50)],
                             [0.0, 0.005, 0.01 * (1 - 4 / 100) ** 0.9,
                              0.01 * (1 - 50 / 100) ** 0.9], rtol=1e-6)


def test_unknown_schedule_and_optimizer_fail_clearly():
  with pytest.raises(ValueError, match="schedule='cosine'"):
    optim.make_schedule(_opt_config(schedule='cosine'), 10)
  with pytest.raises(ValueError, match="name='adam'"):
    optim.make_optimizer(_opt_config(name='adam'), 10)

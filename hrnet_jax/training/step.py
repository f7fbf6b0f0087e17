"""Training state, its sharded creation, initialisation from a checkpoint, and the step.

The step is one `jax.jit` over the mesh: the batch is split over every device, the
state is replicated (or FSDP-sharded); XLA adds the collectives, so BatchNorm batch
statistics are global across devices and hosts (SyncBN) with no `pmean`.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from absl import logging
import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from hrnet_jax import xla_cpu
from hrnet_jax.data import normalization
from hrnet_jax.models import initializers
from hrnet_jax.training import sharding

# Parameters are shape-independent of the input (fully convolutional, global pooling in
# the classifier): initialise on a small image rather than the training crop.
INIT_IMAGE_SIZE = 64


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array          # raw uint32 key data (checkpointable); per step fold_in(step)


def _init_variables(model, rng):
  images = jnp.zeros((1, INIT_IMAGE_SIZE, INIT_IMAGE_SIZE, 3), jnp.float32)
  # Sampled in bulk: a fraction of model.init's compile time (initializers.py).
  variables = initializers.init_variables(model, rng, images, train=False)
  return variables['params'], variables.get('batch_stats', {})


def _state_fn(model, tx, seed: int) -> Callable[[], TrainState]:
  def create():
    key = jax.random.key(seed)
    init_key, train_key = jax.random.split(key)
    params, batch_stats = _init_variables(model, init_key)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                      opt_state=tx.init(params), rng=jax.random.key_data(train_key))
  return create


def abstract_state(model, tx, seed: int) -> TrainState:
  return jax.eval_shape(_state_fn(model, tx, seed))


def make_state_shardings(mesh, abstract: TrainState, *, fsdp: bool) -> TrainState:
  return sharding.state_shardings(mesh, abstract, fsdp=fsdp)


def sharded_abstract_state(model, tx, *, seed: int, mesh, fsdp: bool = False):
  """(the state as jax.ShapeDtypeStructs carrying their shardings, the shardings).

  Traces the initialiser without compiling it: what a restore from a checkpoint needs.
  """
  abstract = abstract_state(model, tx, seed)
  shardings = make_state_shardings(mesh, abstract, fsdp=fsdp)
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      abstract, shardings), shardings


def init_state(model, tx, *, seed: int, shardings) -> TrainState:
  """A freshly initialised state, born sharded as `shardings` say."""
  start = time.perf_counter()
  init = jax.jit(_state_fn(model, tx, seed), out_shardings=shardings)
  state = init.lower().compile(compiler_options=xla_cpu.initializer_options())()
  jax.block_until_ready(state)
  logging.info('Initialised the state (seed %d) in %.1f s, compilation included.', seed,
               time.perf_counter() - start)
  return state


def create_state(model, tx, *, seed: int, mesh, fsdp: bool = False):
  """(state born sharded on the mesh, its shardings)."""
  _, shardings = sharded_abstract_state(model, tx, seed=seed, mesh=mesh, fsdp=fsdp)
  return init_state(model, tx, seed=seed, shardings=shardings), shardings


# ----------------------------------------------------------------------------
# Initialisation from a converted checkpoint.
# ----------------------------------------------------------------------------
def _flat(tree) -> dict[tuple[str, ...], Any]:
  return {tuple(str(k) for k in path): leaf
          for path, leaf in flax.traverse_util.flatten_dict(
              flax.core.unfreeze(tree) if tree else {}).items()}


def merge_pretrained(state: TrainState, variables: dict[str, Any], *, source: str
                     ) -> tuple[TrainState, dict[str, list[str]]]:
  """Loads every variable whose path and shape match, as the official exact-key load.

  Returns the new state and a report {'loaded', 'fresh', 'ignored', 'mismatched'} of
  '/'-joined paths. Arrays keep the state's shardings.
  """
  report = {'loaded': [], 'fresh': [], 'ignored': [], 'mismatched': []}
  new = {}
  for collection in ('params', 'batch_stats'):
    ours = _flat(getattr(state, collection))
    theirs = _flat(variables.get(collection, {}))
    merged = {}
    for path, leaf in ours.items():
      name = '/'.join((collection,) + path)
      if path not in theirs:
        merged[path] = leaf
        report['fresh'].append(name)
      elif tuple(np.shape(theirs[path])) != tuple(leaf.shape):
        merged[path] = leaf
        report['mismatched'].append(
            f'{name} {tuple(np.shape(theirs[path]))} vs {tuple(leaf.shape)}')
      else:
        value = np.asarray(theirs[path]).astype(leaf.dtype)
        merged[path] = jax.make_array_from_callback(leaf.shape, leaf.sharding,
                                                    lambda idx, v=value: v[idx])
        report['loaded'].append(name)
    report['ignored'] += ['/'.join((collection,) + p) for p in theirs if p not in ours]
    new[collection] = flax.traverse_util.unflatten_dict(merged) if merged else {}
  if not report['loaded']:
    raise ValueError(f'init_checkpoint {source} shares no variable (same path and shape) '
                     'with this model; check config.model.name against the checkpoint.')
  return state.replace(params=new['params'], batch_stats=new['batch_stats']), report


_INIT_REPORT_LINES = {
    'fresh': 'not in the checkpoint, freshly initialised',
    # Fine-tuning on another class count: the classifier lands here and keeps its init.
    'mismatched': 're-initialised, shape differs from the checkpoint (checkpoint vs model)',
    'ignored': 'in the checkpoint, not in the model',
}


def log_init_report(report: dict[str, list[str]], source: str) -> None:
  logging.info('Initialised from %s: %d variables loaded, %d freshly initialised, '
               '%d re-initialised (shape differs from the checkpoint), %d checkpoint '
               'variables ignored.', source, len(report['loaded']), len(report['fresh']),
               len(report['mismatched']), len(report['ignored']))
  for key, what in _INIT_REPORT_LINES.items():
    if report[key]:
      shown = report[key][:40]
      more = f' ... and {len(report[key]) - len(shown)} more' if len(report[key]) > 40 else ''
      logging.info('  %s: %s%s', what, ', '.join(shown), more)


# ----------------------------------------------------------------------------
# The step.
# ----------------------------------------------------------------------------
def make_loss_fn(model, task_loss: Callable[[Any, Any], jax.Array]):
  """loss(params, batch_stats, batch, rng) -> (loss, new batch_stats).

  The model sees the normalised batch['image'] in training mode; `task_loss(outputs,
  batch)` is the task's loss (`Task.make_loss`), which reads whatever else the batch
  carries (labels, targets, weights).
  """
  opts = getattr(model, 'opts', None)
  input_dtype = (jnp.promote_types(opts.dtype, jnp.float32) if opts is not None
                 else jnp.float32)

  def loss_fn(params, batch_stats, batch, rng):
    out, mutated = model.apply({'params': params, 'batch_stats': batch_stats},
                               normalization.normalize(batch['image'], input_dtype),
                               train=True,
                               mutable=['batch_stats'], rngs={'dropout': rng})
    return task_loss(out, batch), mutated['batch_stats']

  return loss_fn


def make_grad_fn(loss_fn, accum_steps: int):
  """(params, batch_stats, batch, rng) -> (loss, grads, new batch_stats).

  With accum_steps > 1 the batch (every entry) is cut into that many micro-batches
  (rows r with r % accum_steps == j, so each stays split over every device); gradients
  and losses are averaged and BatchNorm statistics updated micro-batch after micro-batch.
  """
  grad = jax.value_and_grad(loss_fn, has_aux=True)

  def single(params, batch_stats, batch, rng):
    (loss, new_stats), grads = grad(params, batch_stats, batch, rng)
    return loss, grads, new_stats

  if accum_steps <= 1:
    return single

  def accumulated(params, batch_stats, batch, rng):
    def split(x):
      if x.shape[0] % accum_steps:
        raise ValueError(f'batch of {x.shape[0]} is not divisible by config.grad_accum_steps'
                         f'={accum_steps}.')
      x = x.reshape((x.shape[0] // accum_steps, accum_steps) + x.shape[1:])
      return jnp.swapaxes(x, 0, 1)

    micro = jax.tree.map(split, dict(batch))

    def body(carry, xs):
      loss_sum, grad_sum, stats = carry
      mb, j = xs
      loss, grads, stats = single(params, stats, mb, jax.random.fold_in(rng, j))
      return (loss_sum + loss, jax.tree.map(jnp.add, grad_sum, grads), stats), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    (loss_sum, grad_sum, stats), _ = jax.lax.scan(
        body, (jnp.zeros((), jnp.float32), zeros, batch_stats),
        (micro, jnp.arange(accum_steps)))
    return (loss_sum / accum_steps, jax.tree.map(lambda g: g / accum_steps, grad_sum), stats)

  return accumulated


def make_train_step(grad_fn, tx: optax.GradientTransformation, schedule, *,
                    with_grads: bool = False):
  """step(state, batch) -> (state, metrics).

  A non-finite loss or gradient leaves the state unchanged (metrics['finite'] is
  False) so the last good state survives. `with_grads` adds the gradients to the
  metrics (tests).
  """

  def step(state: TrainState, batch):
    rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    loss, grads, new_stats = grad_fn(state.params, state.batch_stats, batch, rng)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

    # One conditional rather than a select per leaf: with selects, XLA fuses the
    # optimizer's new state into both the state's and the parameters' select, each
    # reading the other's donated buffer, and copies every parameter and optimizer
    # leaf first (1843 copies in hrnet_w48's step, a sixth of its thunks).
    def apply(_):
      updates, new_opt = tx.update(grads, state.opt_state, state.params)
      return optax.apply_updates(state.params, updates), new_opt, new_stats

    def skip(_):
      return state.params, state.opt_state, state.batch_stats

    new_params, new_opt, kept_stats = jax.lax.cond(finite, apply, skip, None)
    new_state = state.replace(
        step=state.step + finite.astype(state.step.dtype),
        params=new_params, batch_stats=kept_stats, opt_state=new_opt)
    metrics = {'loss': loss, 'grad_norm': grad_norm, 'lr': schedule(state.step),
               'finite': finite}
    if with_grads:
      metrics['grads'] = grads
    return new_state, metrics

  return step


def jit_train_step(step_fn, mesh, state_shardings):
  """The jitted step, with the backend's compile options (hrnet_jax.xla_cpu)."""
  return xla_cpu.jit(step_fn,
                     in_shardings=(state_shardings, sharding.batch_sharding(mesh)),
                     out_shardings=(state_shardings, sharding.replicated(mesh)),
                     donate_argnums=(0,))

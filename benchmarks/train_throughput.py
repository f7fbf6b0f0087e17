r"""Training throughput of the real train step (optimizer included) of any config.

Builds the model, optimizer and jitted step exactly as the trainer does (the project's
own step builder), feeds it random batches of the configured crop, and prints one
markdown row: images/s, step time, compile time, peak memory and MFU. Works on any
backend, so the same command reports CPU, GPU and TPU figures.

  python benchmarks/train_throughput.py --config=configs/quickstart.py --steps=5
  python benchmarks/train_throughput.py --config=configs/cityscapes_w48.py \
      --batch=2 --crop=512,1024 --dtype=bfloat16 --remat
  python benchmarks/train_throughput.py --config=configs/quickstart.py \
      --config.model.name=hrnet_w18_small_v2 --header=false

Figures:
  * step time: median over --steps timed steps (after --warmup untimed ones), each
    synchronised on the loss; images/s = batch / step time.
  * init: the state's creation (the initialiser traced, compiled and run), seconds: what a
    fresh run pays before the step compiles (a restart from a checkpoint does not).
  * compile: `lower()` + `compile()` of the step, seconds (persistent cache honoured if
    JAX_COMPILATION_CACHE_DIR is set: run twice to see the cached figure).
  * peak memory: the device allocator's peak (`memory_stats()['peak_bytes_in_use']`)
    where the backend reports it (GPU, TPU); else XLA's static estimate of the compiled
    step, arguments + outputs + temporaries - aliased (`compiled.memory_analysis()`).
  * MFU: model FLOPs / step time / peak FLOP/s, model FLOPs = 2 * MACs (conv + linear,
    `hrnet_jax.count_macs` at the crop) * 3 (forward + backward) * batch. The peak is
    --peak_tflops, else the datasheet dense peak of a known accelerator for the dtype,
    else (CPU) a measured fp32 matmul rate of this process, labelled as such.
"""
from __future__ import annotations

import inspect
import math
import os
import statistics
import sys
import time

from absl import app
from absl import flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/quickstart.py',
                                          'Training configuration file.', lock_config=False)
_BATCH = flags.DEFINE_integer('batch', None, 'Global batch; default config.global_batch_size.')
_CROP = flags.DEFINE_string('crop', None, 'H,W of the training crop; default the config\'s.')
_DTYPE = flags.DEFINE_string('dtype', None, 'Compute dtype (float32, bfloat16); default '
                             'config.model.dtype.')
_REMAT = flags.DEFINE_boolean('remat', None, 'Rematerialise each HRNet module; default '
                              'config.model.remat.')
_STEPS = flags.DEFINE_integer('steps', 10, 'Timed steps.')
_WARMUP = flags.DEFINE_integer('warmup', 2, 'Untimed steps after compilation.')
_PEAK = flags.DEFINE_float('peak_tflops', 0.0, 'Peak TFLOP/s of the device(s) for MFU; '
                           '0 = datasheet value of a known accelerator, measured matmul '
                           'rate on a CPU.')
_HEADER = flags.DEFINE_boolean('header', True, 'Print the markdown table header.')

# Dense datasheet peaks per chip, TFLOP/s: (bfloat16, float32). float32 on GPUs is the
# non-tensor-core rate (XLA's default precision uses TF32 there only when asked).
_PEAKS = {
    'H100': (989.0, 67.0), 'H200': (989.0, 67.0), 'A100': (312.0, 19.5),
    'TPU v4': (275.0, 275.0 / 4), 'TPU v5 lite': (197.0, 197.0 / 4),
    'TPU v5e': (197.0, 197.0 / 4), 'TPU v5p': (459.0, 459.0 / 4),
    'TPU v6 lite': (918.0, 918.0 / 4),
}


def _step_module():
  """The project's step builder, before or after the training/ regroup."""
  try:
    from hrnet_jax.training import step  # pylint: disable=g-import-not-at-top
    return step
  except ImportError:
    from hrnet_jax import train_step  # pylint: disable=g-import-not-at-top
    return train_step


def _optim_module():
  try:
    from hrnet_jax.training import optim  # pylint: disable=g-import-not-at-top
    return optim
  except ImportError:
    from hrnet_jax import optim  # pylint: disable=g-import-not-at-top
    return optim


def _sharding_module():
  try:
    from hrnet_jax.training import sharding  # pylint: disable=g-import-not-at-top
    return sharding
  except ImportError:
    from hrnet_jax import sharding  # pylint: disable=g-import-not-at-top
    return sharding


def build_model(config):
  """The trainer's model builder (same options), else create_model with its arguments."""
  try:
    from hrnet_jax.training.trainer import build_model as trainer_build  # pylint: disable=g-import-not-at-top
    return trainer_build(config)
  except ImportError:
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    import hrnet_jax  # pylint: disable=g-import-not-at-top
    m = config.model
    return hrnet_jax.create_model(
        m.name, head=m.head, num_classes=m.num_classes, dtype=jnp.dtype(m.dtype),
        param_dtype=jnp.dtype(m.param_dtype), upsample=m.upsample,
        align_corners=m.align_corners, bn_momentum=m.bn_momentum, remat=bool(m.remat))


def _make_loss_fn(ts, model, config):
  """ts.make_loss_fn for either signature: (model, config, align_corners=) or task-based."""
  params = inspect.signature(ts.make_loss_fn).parameters
  if 'align_corners' in params:
    try:
      from hrnet_jax.evaluation.inference import resolve_align_corners  # pylint: disable=g-import-not-at-top
    except ImportError:
      from hrnet_jax.evaluate import resolve_align_corners  # pylint: disable=g-import-not-at-top
    return ts.make_loss_fn(model, config,
                           align_corners=resolve_align_corners(model.opts, config))
  from hrnet_jax import tasks  # pylint: disable=g-import-not-at-top
  task = tasks.task_for_config(config)
  available = {'model': model, 'config': config, 'task': task}
  if 'task_loss' in params or 'loss' in params:
    available['task_loss' if 'task_loss' in params else 'loss'] = task.make_loss(model, config)
  return ts.make_loss_fn(**{k: v for k, v in available.items() if k in params})


def fake_batch(config, batch: int, crop, rng):
  """Random uint8 images and labels shaped as the task's training batches."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  h, w = crop
  images = rng.integers(0, 256, (batch, h, w, 3), dtype=np.uint8)
  n = int(config.model.num_classes)
  if config.model.head == 'cls':
    labels = rng.integers(0, n, (batch,), dtype=np.int32)
  else:
    labels = rng.integers(0, n, (batch, h, w), dtype=np.int32)
  return {'image': images, 'label': labels}


def _cpu_matmul_tflops() -> float:
  """Achieved fp32 2048^3 matmul rate of this process (the CPU's practical peak)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  a = jnp.ones((2048, 2048), jnp.float32)
  f = jax.jit(lambda a: a @ a)
  f(a).block_until_ready()
  times = []
  for _ in range(5):
    start = time.perf_counter()
    f(a).block_until_ready()
    times.append(time.perf_counter() - start)
  return 2 * 2048 ** 3 / min(times) / 1e12


def peak_tflops(device, dtype: str) -> tuple[float, str]:
  """(peak TFLOP/s of all local devices, where the figure comes from)."""
  import jax  # pylint: disable=g-import-not-at-top
  if _PEAK.value > 0:
    return _PEAK.value, 'given'
  kind = device.device_kind
  for name, (bf16, fp32) in _PEAKS.items():
    if name.lower() in kind.lower():
      return (bf16 if dtype == 'bfloat16' else fp32) * jax.local_device_count(), 'datasheet'
  if device.platform == 'cpu':
    return _cpu_matmul_tflops(), 'measured fp32 matmul'
  return float('nan'), 'unknown'


def peak_memory_bytes(compiled, device) -> tuple[float, str]:
  stats = device.memory_stats() if hasattr(device, 'memory_stats') else None
  if stats and stats.get('peak_bytes_in_use'):
    return float(stats['peak_bytes_in_use']), 'allocator peak'
  try:
    m = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except  (backends without the analysis)
    m = None
  if m is None:
    return float('nan'), 'n/a'
  total = (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes -
           m.alias_size_in_bytes)
  return float(total), 'XLA estimate'


def run(config, *, steps: int, warmup: int) -> dict:
  """Compiles and times the train step of `config`; returns the figures."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import hrnet_jax  # pylint: disable=g-import-not-at-top

  ts, optim, sharding = _step_module(), _optim_module(), _sharding_module()
  mesh = sharding.make_mesh(config.mesh)
  model = build_model(config)
  tx, schedule = optim.make_optimizer(config.optimizer, max(int(config.num_train_steps), 1))
  start = time.perf_counter()
  state, shardings = ts.create_state(model, tx, seed=int(config.seed), mesh=mesh,
                                     fsdp=config.mesh.fsdp > 1)   # returns when ready
  init_s = time.perf_counter() - start
  loss_fn = _make_loss_fn(ts, model, config)
  grad_fn = ts.make_grad_fn(loss_fn, int(config.grad_accum_steps))
  step_fn = ts.jit_train_step(ts.make_train_step(grad_fn, tx, schedule), mesh, shardings)

  batch_size = int(config.global_batch_size)
  crop = tuple(int(v) for v in config.data.crop_size)
  rng = np.random.default_rng(0)
  batches = [sharding.global_batch(fake_batch(config, batch_size, crop, rng), mesh)
             for _ in range(2)]

  start = time.perf_counter()
  compiled = step_fn.lower(state, batches[0]).compile()
  compile_s = time.perf_counter() - start

  for i in range(warmup):
    state, metrics = compiled(state, batches[i % 2])
  jax.block_until_ready(state)
  times = []
  for i in range(steps):
    start = time.perf_counter()
    state, metrics = compiled(state, batches[i % 2])
    jax.block_until_ready(metrics['loss'])
    times.append(time.perf_counter() - start)
  step_s = statistics.median(times)

  device = jax.local_devices()[0]
  mem, mem_source = peak_memory_bytes(compiled, device)
  macs = hrnet_jax.count_macs(model, crop)
  flops = 2.0 * macs * 3 * batch_size
  peak, peak_source = peak_tflops(device, str(config.model.dtype))
  achieved = flops / step_s / 1e12
  return dict(
      config=config.model.name, head=config.model.head, backend=device.platform,
      device=device.device_kind, devices=jax.device_count(), dtype=str(config.model.dtype),
      remat=bool(config.model.remat), batch=batch_size, crop=crop, step_s=step_s,
      images_per_s=batch_size / step_s, init_s=init_s, compile_s=compile_s, peak_mem_gib=mem / 2**30,
      mem_source=mem_source, tflops=achieved, peak_tflops=peak, peak_source=peak_source,
      mfu=achieved / peak if peak == peak else float('nan'),
      loss=float(jax.device_get(metrics['loss'])))


HEADER = ('| model | head | device | dtype | remat | batch | crop | step ms | images/s | '
          'init s | compile s | peak mem GiB | TFLOP/s | MFU |\n'
          '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|')


def markdown_row(r: dict) -> str:
  return (f"| {r['config']} | {r['head']} | {r['device']} x{r['devices']} | {r['dtype']} | "
          f"{'yes' if r['remat'] else 'no'} | {r['batch']} | {r['crop'][0]}x{r['crop'][1]} | "
          f"{r['step_s'] * 1e3:.1f} | {r['images_per_s']:.2f} | {r['init_s']:.1f} | "
          f"{r['compile_s']:.1f} | "
          f"{r['peak_mem_gib']:.2f} ({r['mem_source']}) | {r['tflops']:.3g} | "
          f"{100 * r['mfu']:.1f}% of {r['peak_tflops']:.3g} ({r['peak_source']}) |")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  from hrnet_jax import host_memory  # pylint: disable=g-import-not-at-top
  host_memory.reexec_with_huge_pages()   # as train.py on the CPU backend
  print(f'(glibc huge pages for large host buffers: {host_memory.tunable_is_set()}; '
        f'{host_memory.ENV_VAR}=off runs without them)', file=sys.stderr)
  config = _CONFIG.value
  if _BATCH.value is not None:
    config.global_batch_size = _BATCH.value
    if config.loss.get('chunk_images', 0):   # the loss chunks must divide the new batch
      config.loss.chunk_images = math.gcd(int(config.loss.chunk_images), _BATCH.value)
  if _CROP.value is not None:
    try:
      h, w = (int(v) for v in _CROP.value.split(','))
    except ValueError:
      sys.exit(f'error: --crop={_CROP.value!r}: give H,W, e.g. --crop=512,1024.')
    config.data.crop_size = (h, w)
  if _DTYPE.value is not None:
    config.model.dtype = _DTYPE.value
  if _REMAT.value is not None:
    config.model.remat = _REMAT.value
  if _STEPS.value < 1:
    sys.exit('error: --steps must be at least 1.')
  result = run(config, steps=_STEPS.value, warmup=max(_WARMUP.value, 0))
  if _HEADER.value:
    print(HEADER)
  print(markdown_row(result))
  print(f"(loss after the last step {result['loss']:.4f})", file=sys.stderr)


if __name__ == '__main__':
  app.run(main)

"""Honest speed figures: steady-state step times, the device's measured peak, memory.

Every timing blocks on the step's results, skips warm-up (compilation included), and reports
the median with its 10th and 90th percentiles. Data is synthetic and already on the devices,
so only the model's step is measured, never the input pipeline.
"""
import dataclasses
import resource
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from convjax import errors, models, parallel
from convjax.analysis import profile, summary
from convjax.training import builder

MODES = ('train', 'infer')
# Training a layer costs about 3x its forward pass: the forward, plus the gradients with respect
# to its input and to its weights, each as large as the forward.
TRAIN_FLOPS_PER_FORWARD = 3


@dataclasses.dataclass(frozen=True)
class Timing:
  """Step times of one measured loop, in milliseconds, and what compiling took."""
  step_ms: list[float]
  compile_seconds: float

  def percentile(self, q: float) -> float:
    return float(np.percentile(self.step_ms, q))

  @property
  def median_ms(self) -> float:
    return self.percentile(50)

  def summary(self) -> dict:
    return {'median': self.median_ms, 'p10': self.percentile(10), 'p90': self.percentile(90)}


def time_steps(step: Callable[[Any], Any], carry: Any, warmup: int = 3, min_steps: int = 10,
               min_seconds: float = 2.0, block: Callable[[Any], Any] = jax.block_until_ready
               ) -> Timing:
  """Times `carry = block(step(carry))` until both min_steps and min_seconds are reached.

  The first call compiles; its time less the median step is compile_seconds. The next `warmup`
  steps are run untimed, so caches and allocators reach their steady state. `block` waits for
  the step's results (the PyTorch peer passes a function that does so for its tensors).
  """
  start = time.perf_counter()
  carry = block(step(carry))
  first = time.perf_counter() - start
  for _ in range(warmup):
    carry = block(step(carry))
  times, began = [], time.perf_counter()
  while len(times) < min_steps or time.perf_counter() - began < min_seconds:
    start = time.perf_counter()
    carry = block(step(carry))
    times.append(1e3 * (time.perf_counter() - start))
  median = float(np.median(times))
  return Timing(times, max(first - median / 1e3, 0.0))


def peak_matmul_flops(dp: parallel.DataParallel, dtype=jnp.float32, size: int = 2048,
                      min_seconds: float = 1.0) -> float:
  """The FLOP/s of a [size, size] @ [size, size] matmul on every device of `dp` at once.

  This is the machine's practical ceiling for dense arithmetic with this device setup: on a CPU
  split into several XLA devices, they share the same cores, so the total is measured, not
  multiplied up.
  """
  n = dp.num_local_devices
  a = dp.replicate(np.random.default_rng(0).normal(size=(size, size)).astype(np.float32))
  a = jax.tree.map(lambda x: x.astype(dtype), a)
  # b <- a @ b / size keeps the values bounded, and chains the steps so none can be skipped.
  matmul = dp.pmap(lambda a, b: (a, jnp.dot(a, b, preferred_element_type=dtype) / size),
                   in_axes=parallel.REPLICATED, out_axes=parallel.REPLICATED)
  timing = time_steps(lambda ab: matmul(*ab), (a, a), min_seconds=min_seconds)
  return n * 2 * size ** 3 / (timing.median_ms / 1e3)


def peak_memory_bandwidth(dp: parallel.DataParallel, megabytes: int = 256,
                          min_seconds: float = 1.0) -> float:
  """Bytes/s that `x + 1` streams over a float32 array of `megabytes` (far beyond the caches) on
  every device of `dp` at once: each element is read once and written once.

  The other ceiling of a step: elementwise work (normalisation, activations, pooling, the
  optimiser) is bound by this, not by FLOP/s.
  """
  n = megabytes * 2 ** 20 // 4
  x = dp.replicate(np.zeros(n, np.float32))
  add_one = dp.pmap(lambda x: x + 1, in_axes=parallel.REPLICATED, out_axes=parallel.REPLICATED,
                    donate_first_arg=True)
  timing = time_steps(add_one, x, min_seconds=min_seconds)
  return dp.num_local_devices * 2 * 4 * n / (timing.median_ms / 1e3)


def synthetic_batch(dp: parallel.DataParallel, batch_size: int, input_shape, num_classes: int,
                    seed: int = 0) -> dict:
  """Random uint8 images and labels of a global batch, sharded onto the devices."""
  rng = np.random.default_rng(seed)
  return dp.shard({
      'image': rng.integers(0, 256, (batch_size, *input_shape), dtype=np.uint8),
      'label': rng.integers(0, num_classes, batch_size).astype(np.int32),
      'mask': np.ones(batch_size, np.float32)})


def benchmark_config(base, name: str, batch_size: int, half_precision: bool = False,
                     learning_rate: float = 1e-3):
  """`base` (the defaults) for model `name` with the benchmark's optimiser: SGD with momentum 0.9
  at a constant rate, the step benchmarks.pytorch runs."""
  config = ml_collections.ConfigDict(base.to_dict())
  config.update(model=name, batch_size=batch_size, half_precision=half_precision,
                optimizer='momentum', momentum=0.9, lr_schedule='constant', warmup_epochs=0.0,
                learning_rate=learning_rate, weight_decay=0.0, aux_loss_weight=0.0)
  return config


@dataclasses.dataclass
class Setup:
  """A built run ready to time: its replicated state, a batch on the devices, and its counts."""
  run: builder.Run
  state: Any
  batch: dict
  params: int
  flops_per_image: int


def setup(config, dp: parallel.DataParallel, input_shape=None) -> Setup:
  """config.model at its native input (or input_shape), built as training builds it, on
  synthetic data of config.batch_size."""
  spec = models.get_spec(config.model)
  input_shape = tuple(input_shape or spec.input_shape)
  run = builder.build(config, dp, builder.DataSpec.synthetic(input_shape, spec.num_classes,
                                                             config.batch_size))
  return Setup(run, dp.replicate(run.init_state()),
               synthetic_batch(dp, config.batch_size, input_shape, spec.num_classes),
               summary.count_params(run.model, input_shape),
               summary.flops_per_image(run.model, input_shape))


def train_step_fn(s: Setup) -> Callable:
  """carry (state) -> new state: the training loop's own pmapped step."""
  return lambda state: s.run.p_train_step(state, s.batch)[0]


def infer_step_fn(s: Setup) -> Callable:
  """carry (logits) -> logits: a forward pass in evaluation mode over the batch."""
  return lambda _: s.run.p_infer_step(s.state, s.batch['image'])


def measure(config, mode: str, dp: parallel.DataParallel, peak_flops: float, input_shape=None,
            min_seconds: float = 2.0, breakdown: bool = False) -> dict:
  """One result row of experiments.benchmark for config.model in `mode` ('train' or 'infer').
  With `breakdown`, the row's 'breakdown' is where the step's time goes (profile.profile)."""
  if mode not in MODES:
    raise errors.InvalidValueError(f"unknown mode '{mode}'; valid modes are: {', '.join(MODES)}")
  s = setup(config, dp, input_shape)
  step = train_step_fn(s) if mode == 'train' else infer_step_fn(s)
  timing = time_steps(step, s.state, min_seconds=min_seconds)
  images_per_sec = config.batch_size / (timing.median_ms / 1e3)
  passes = TRAIN_FLOPS_PER_FORWARD if mode == 'train' else 1
  achieved = images_per_sec * s.flops_per_image * passes
  row = {'model': config.model, 'mode': mode, 'batch_size': config.batch_size,
          'images_per_sec': images_per_sec, 'step_ms': timing.summary(),
          'compile_seconds': timing.compile_seconds, 'params': s.params,
          'flops_per_image': s.flops_per_image, 'achieved_flops': achieved,
          'flops_utilization': achieved / peak_flops}
  row['peak_rss_bytes'] = peak_rss_bytes()
  if breakdown:
    row['breakdown'] = _breakdown(s, mode, dp)
  return row


def peak_rss_bytes() -> int:
  """This process's peak resident memory so far (Linux's ru_maxrss, in KiB): with one model per
  process, as benchmarks.vs_pytorch runs them, the memory that model's step needed at most."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _breakdown(s: Setup, mode: str, dp: parallel.DataParallel) -> dict:
  """profile.profile of the timed step, run again from a fresh state (the timed one was
  donated to its last step)."""
  state = dp.replicate(s.run.init_state())
  if mode == 'train':
    step, hlo = train_step_fn(s), s.run.p_train_step.lower(state, s.batch).compile().as_text()
  else:
    s = dataclasses.replace(s, state=state)
    step = infer_step_fn(s)
    hlo = s.run.p_infer_step.lower(state, s.batch['image']).compile().as_text()
  carry = jax.block_until_ready(step(state))
  return profile.profile(step, carry, hlo, devices=dp.num_devices)

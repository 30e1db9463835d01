"""Training: the state, the per-device steps, and the loop that runs them.

`train_step` and `eval_step` are pure per-device functions; `parallel.DataParallel` makes them
data-parallel. The loop only sees replicated states and sharded batches, never devices.
"""
import contextlib
import dataclasses
import functools
import math
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

from convjax import (checkpoint, config as config_lib, data, errors, lowering, metrics, models,
                     optim, parallel, pipeline as pipeline_lib, sampling, stopping, summary,
                     workdir as workdir_lib)


class NonFiniteLossError(errors.UserError, FloatingPointError):
  """Training produced a NaN or Inf loss or gradient; the message names the step."""


class TrainState(train_state.TrainState):
  """Parameters, optimiser state and step, plus:

  batch_stats: batch-norm running averages ({} for models without batch norm).
  rng: a raw uint32[2] key; step s on device d draws dropout from fold_in(fold_in(rng, s), d).
  """
  batch_stats: Any
  rng: jax.Array


def create_train_state(model, tx: optax.GradientTransformation, input_shape, seed: int) -> TrainState:
  """A fresh state; input_shape is (height, width, channels)."""
  init_key, dropout_key = jax.random.split(jax.random.PRNGKey(seed))
  dummy = jnp.zeros((1,) + tuple(input_shape), jnp.float32)
  variables = jax.jit(functools.partial(model.init, train=False))(init_key, dummy)
  return TrainState.create(apply_fn=model.apply, params=variables['params'], tx=tx,
                           batch_stats=variables.get('batch_stats', {}), rng=dropout_key)


def cross_entropy(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
  """Softmax cross-entropy per example: logits [batch, classes], int labels [batch] -> [batch]."""
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


def _variables(state: TrainState, params) -> dict:
  return {'params': params, 'batch_stats': state.batch_stats}


def train_step(state: TrainState, batch: dict, *, normalize: Callable, schedule: optax.Schedule,
               aux_loss_weight: float = 0.0,
               skip_nonfinite: bool = False) -> tuple[TrainState, dict]:
  """One SGD step on one device's share of the global batch.

  Gradients and metrics are averaged over all devices. Batch-norm layers normalise with this
  device's batch statistics; the running averages are then averaged over devices so every
  replica holds the same state (the flax ImageNet example's choice).

  Args:
    state: this device's replica.
    batch: image uint8 [per_device_batch, h, w, c], label int32 [per_device_batch].
    normalize: uint8 images -> model input.
    schedule: the learning rate by step, for logging.
    aux_loss_weight: weight of the auxiliary classifiers' losses (GoogLeNet), for models that
      sow 'aux_logits' into 'intermediates'; train_loss reports the main classifier's loss.
    skip_nonfinite: when the loss or a gradient is NaN or Inf, keep the parameters, optimiser
      state and batch statistics as they were (the step counter still advances).
  Returns:
    The new state and {'train_loss', 'train_accuracy', 'learning_rate', 'finite'}, where
    finite (bool) says the averaged loss and gradients were finite, the same on every device.
  """
  images, labels = normalize(batch['image']), batch['label']
  dropout_rng = jax.random.fold_in(jax.random.fold_in(state.rng, state.step), parallel.device_index())

  def loss_fn(params):
    logits, updates = state.apply_fn(_variables(state, params), images, train=True,
                                     rngs={'dropout': dropout_rng},
                                     mutable=['batch_stats', 'intermediates'])
    loss = cross_entropy(logits, labels).mean()
    aux_logits = updates.get('intermediates', {}).get('aux_logits', ())
    aux_loss = sum(cross_entropy(aux, labels).mean() for aux in aux_logits)
    return loss + aux_loss_weight * aux_loss, (loss, logits, updates)

  (total, (loss, logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  grads = parallel.mean(grads)
  batch_stats = parallel.mean(updates.get('batch_stats', {}))
  new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  step_metrics = parallel.mean({'train_loss': loss, 'total_loss': total,
                                'train_accuracy': jnp.mean(jnp.argmax(logits, -1) == labels)})
  # From averaged values, so every device takes the same decision.
  finite = jnp.isfinite(step_metrics.pop('total_loss')) & jnp.isfinite(optax.tree.norm(grads))
  if skip_nonfinite:
    keep = functools.partial(jax.tree.map, lambda new, old: jnp.where(finite, new, old))
    new_state = new_state.replace(params=keep(new_state.params, state.params),
                                  opt_state=keep(new_state.opt_state, state.opt_state),
                                  batch_stats=keep(new_state.batch_stats, state.batch_stats))
  step_metrics['learning_rate'] = schedule(state.step)
  step_metrics['finite'] = finite
  return new_state, step_metrics


def pmap_train_step(dp: parallel.DataParallel, normalize: Callable, schedule: optax.Schedule,
                    aux_loss_weight: float = 0.0, skip_nonfinite: bool = False) -> Callable:
  """`train_step` over every device of `dp`: (replicated state, sharded batch) -> (state, metrics).

  The state argument is donated: callers keep only the returned state.
  """
  return dp.pmap(functools.partial(train_step, normalize=normalize, schedule=schedule,
                                   aux_loss_weight=aux_loss_weight,
                                   skip_nonfinite=skip_nonfinite), donate_first_arg=True)


def eval_step(state: TrainState, batch: dict, *, normalize: Callable) -> dict:
  """Summed loss, top-1 and top-5 hits and example count over the masked global batch.

  batch: image uint8 [per_device_batch, h, w, c], label int32 [...], mask float32 [...] (0 = padding).
  """
  logits = state.apply_fn(_variables(state, state.params), normalize(batch['image']), train=False)
  labels, mask = batch['label'], batch['mask']
  top_k = jax.lax.top_k(logits, min(5, logits.shape[-1]))[1]
  return parallel.sum({
      'loss': jnp.sum(cross_entropy(logits, labels) * mask),
      'correct': jnp.sum((top_k[:, 0] == labels) * mask),
      'top5_correct': jnp.sum(jnp.any(top_k == labels[:, None], -1) * mask),
      'count': jnp.sum(mask),
  })


def evaluate(p_eval_step: Callable, state: TrainState, batches) -> dict:
  """test_loss, test_accuracy, test_top5_accuracy and num_test_examples over masked batches
  that hold every test example once (a pipeline's eval_batches())."""
  return _test_metrics([p_eval_step(state, batch) for batch in batches])


def evaluate_timed(p_eval_step: Callable, state: TrainState, batches) -> dict:
  """`evaluate`, plus eval_images_per_sec over the batches after the first, which may compile;
  left out when there is only one batch, as nothing is left to time."""
  batches = iter(batches)
  first = jax.block_until_ready(p_eval_step(state, next(batches)))
  start = time.time()
  rest = jax.block_until_ready([p_eval_step(state, batch) for batch in batches])
  seconds = time.time() - start
  results = _test_metrics([first] + rest)
  if rest:
    results['eval_images_per_sec'] = _test_metrics(rest)['num_test_examples'] / max(seconds, 1e-9)
  return results


def _test_metrics(sums: list[dict]) -> dict:
  totals = jax.tree.map(lambda *x: float(np.sum([v[0] for v in x])), *jax.device_get(sums))
  count = totals['count']
  return {'test_loss': totals['loss'] / count, 'test_accuracy': totals['correct'] / count,
          'test_top5_accuracy': totals['top5_correct'] / count, 'num_test_examples': int(count)}


@dataclasses.dataclass
class _Run:
  """What the loop needs, built once by `_setup`."""
  config: Any
  workdir: str
  dp: parallel.DataParallel
  pipeline: Any  # pipeline.InMemoryPipeline or streaming.StreamingPipeline.
  meta: dict
  total_steps: int
  steps_per_epoch: int
  p_train_step: Callable
  p_eval_step: Callable
  checkpointer: checkpoint.Checkpointer
  writer: metrics.MetricsWriter
  progress: metrics.Progress
  nonfinite_streak: int = 0  # Consecutive skipped steps so far (config.skip_nonfinite_steps).
  # Checked steps after the last training line, as restored from the checkpoint resumed from.
  unlogged: list = dataclasses.field(default_factory=list)


def train_and_evaluate(config, workdir: str, start_over: bool = False) -> dict:
  """Trains config.model on config.dataset, evaluating and checkpointing into `workdir`.

  Everything that can be checked is checked before the workdir is touched: the config, the
  data, the model's fit to the input, the workdir's usability, and that its checkpoints belong
  to this model and dataset (`start_over` instead moves an earlier run aside, see
  workdir.start_over). Then the run locks the workdir and resumes from its newest readable
  checkpoint, if any. It stops at the last step, once config.train_budget_seconds of training
  have run, or at a SIGTERM or SIGINT, after checkpointing that step.

  Returns the final evaluation metrics plus 'step', 'train_seconds', 'wall_seconds',
  'train_images_per_sec' and 'eval_images_per_sec'. Raises stopping.Stopped when a signal
  stopped the run.
  """
  start_time = time.time()
  dp = data_parallel(config)
  config_lib.validate(config, dp.num_devices)
  lowering.use_backend(config.conv_backend, dp.num_local_devices)
  if config.train_budget_seconds > 0 and parallel.process_count() > 1:
    # Each process would time itself and could stop at a different step, then deadlock.
    raise config_lib.ConfigError('train_budget_seconds needs a single process; '
                                 f'this run has {parallel.process_count()}')
  pipeline = pipeline_lib.create(config, dp)
  meta = {'model': config.model, 'num_classes': config_lib.num_classes(config),
          'input_shape': list(pipeline.image_shape), 'dataset': config.dataset,
          'config': config_lib.flat(config)}
  model = create_model(config, meta['num_classes'], pipeline.image_shape)
  workdir_lib.check_usable(workdir)
  config_changes = {} if start_over else _check_resume(workdir, meta)
  is_chief = parallel.process_index() == 0
  with workdir_lib.lock(workdir, enabled=is_chief):
    if start_over:
      _start_over(workdir, is_chief)
    run, state, start_step = _setup(config, workdir, dp, pipeline, meta, model, config_changes)
    return _train_and_report(run, state, start_step, start_time)


def _check_resume(workdir: str, meta: dict) -> dict:
  """The resumable config fields that differ from the newest checkpoint's, {field: [old, new]};
  raises when a field that shapes training differs (see config.RESUMABLE_FIELDS)."""
  found = checkpoint.check_compatible(workdir, meta)
  if found is None or 'config' not in found[1]:  # Checkpoints before configs were saved in them.
    return {}
  step, saved = found
  return config_lib.check_resume(saved['config'], meta['config'], step, workdir)


def _start_over(workdir: str, is_chief: bool) -> None:
  moved = workdir_lib.start_over(workdir) if is_chief else None
  if moved:
    print(f'moved the earlier run in {workdir} to {moved}', flush=True)
  parallel.barrier('start_over')  # No process may look for checkpoints before they are gone.


def _train_and_report(run: _Run, state: TrainState, start_step: int, start_time: float) -> dict:
  config = run.config
  try:
    with stopping.StopSignals() as signals:
      state, train_rate, timer, last_step = _train(run, state, start_step, signals)
    if signals.received:  # The `finally` below waits for the checkpoint before this is reported.
      raise stopping.Stopped(signals.received, last_step)
    trained = {'train_seconds': timer.train_seconds(), 'epoch': last_step / run.steps_per_epoch}
    final = {**evaluate_timed(run.p_eval_step, state, run.pipeline.eval_batches()), **trained}
    if last_step > start_step:  # Else this workdir's metrics already end with it.
      run.writer.write(last_step, final)
  finally:
    run.checkpointer.wait()
    run.checkpointer.close()
    run.writer.close()
    run.progress.close()
  final.update(step=last_step, wall_seconds=time.time() - start_time,
               train_images_per_sec=train_rate)
  if math.isfinite(train_rate):
    speed = f'{train_rate:,.0f} train images/s'
  elif last_step > start_step:  # The first step compiles, so one step leaves nothing timed.
    speed = 'one step, too few to time'
  else:
    speed = f'already trained to step {start_step}'
  stopped = (f' (training budget of {config.train_budget_seconds:g} s reached at step {last_step})'
             if last_step < run.total_steps else '')
  run.progress.message(
      f"done: {config.model} on {config.dataset}, test accuracy {final['test_accuracy']:.4f} "
      f"({final['num_test_examples']} images), wall time {final['wall_seconds']:.1f} s, "
      f'{speed}{stopped}, convolutions by {lowering.backend_name()}')
  return final


def data_parallel(config) -> parallel.DataParallel:
  """Data parallelism over config.num_devices local devices; <= 0 means all of them."""
  return parallel.DataParallel(config.num_devices if config.num_devices > 0 else None)


def _evaluate_test_set(run: _Run, state: TrainState) -> dict:
  return evaluate(run.p_eval_step, state, run.pipeline.eval_batches())


def create_model(config, num_classes: int, input_shape: tuple[int, int, int]):
  """The config's model for this input (height, width, channels), checked before any work.

  Raises summary.InputShapeError naming the layer whose output would be empty.
  """
  dtype = jnp.bfloat16 if config.half_precision else jnp.float32
  # config.validate has checked that a positive weight comes with a model that has the heads.
  overrides = {'aux_logits': True} if config.aux_loss_weight > 0 else {}
  overrides.update(config_lib.model_kwargs(config))
  build = lambda shape: models.create(config.model, num_classes, input_shape=shape,
                                      small_inputs=config.small_inputs, dtype=dtype, **overrides)
  model = build(input_shape)
  try:
    summary.check_input_shape(model, input_shape)
  except summary.InputShapeError as e:
    fits = _smallest_square_input(build, input_shape)
    if fits is None:
      raise
    raise summary.InputShapeError(f'{e} (--config.image_size={fits} or larger fits)') from None
  return model


def _smallest_square_input(build: Callable, input_shape, largest: int = 1024) -> int | None:
  """The smallest n for which build((n, n, channels)) takes its input, by bisection above the
  failing input_shape's height (a larger image never empties a map that a smaller one fills)."""
  fits = lambda n: _takes(build((n, n, input_shape[-1])), (n, n, input_shape[-1]))
  low, high = max(input_shape[:2]), largest
  if not fits(high):
    return None
  while high - low > 1:
    middle = (low + high) // 2
    low, high = (low, middle) if fits(middle) else (middle, high)
  return high


def _takes(model, input_shape) -> bool:
  try:
    summary.check_input_shape(model, input_shape)
  except summary.InputShapeError:
    return False
  return True


def _setup(config, workdir: str, dp: parallel.DataParallel, pipeline, meta: dict, model,
           config_changes: dict) -> tuple[_Run, TrainState, int]:
  steps_per_epoch = sampling.steps_per_epoch(pipeline.num_train_examples, config.batch_size)
  total_steps = config_lib.total_steps(config, pipeline.num_train_examples)
  schedule = optim.create_schedule(config, steps_per_epoch, total_steps)
  state = create_train_state(model, optim.create_optimizer(config, schedule),
                             pipeline.image_shape, config.seed)
  checkpointer = checkpoint.Checkpointer(workdir, config.max_checkpoints_to_keep)
  try:
    start_step, state, saved_meta = checkpointer.restore_latest(state) or (0, state, {})
    unlogged = saved_meta.get(_UNLOGGED, [])
  except Exception:
    checkpointer.close()  # The loop's `finally` closes it once set-up has succeeded.
    raise
  is_chief = parallel.process_index() == 0
  if is_chief:
    identity = {k: v for k, v in meta.items() if k != 'config'}
    metrics.write_json(os.path.join(workdir, 'config.json'), {**config.to_dict(), **identity})
  normalize = functools.partial(data.normalize, mean=pipeline.info.mean, std=pipeline.info.std,
                                dtype=model.dtype)
  run = _Run(
      config=config, workdir=workdir, dp=dp, pipeline=pipeline, meta=meta, total_steps=total_steps,
      steps_per_epoch=max(steps_per_epoch, 1),
      p_train_step=pmap_train_step(dp, normalize, schedule, config.aux_loss_weight,
                                   skip_nonfinite=config.skip_nonfinite_steps > 0),
      p_eval_step=dp.pmap(functools.partial(eval_step, normalize=normalize)),
      checkpointer=checkpointer,
      writer=metrics.MetricsWriter(workdir, start_step, enabled=is_chief),
      progress=metrics.Progress(start_step, total_steps, enabled=is_chief,
                                budget_seconds=config.train_budget_seconds),
      # float32, the step's own dtype, so the interval's mean rounds as it would have.
      unlogged=[(s, {k: np.array([v], np.float32) for k, v in m.items()}, ok)
                for s, m, ok in unlogged])
  run.writer.write(start_step, {
      'event': 'start', 'num_devices': dp.num_devices, 'num_processes': parallel.process_count(),
      'global_batch_size': config.batch_size,
      'per_device_batch_size': config.batch_size // dp.num_devices,
      'total_steps': total_steps, 'model': config.model, 'dataset': config.dataset,
      'conv_backend': lowering.backend_name(), 'config_changes': config_changes if start_step else {}})
  run.progress.message(f'training on {parallel.describe(dp)}')
  if start_step and config_changes:
    run.progress.message(f'resuming at step {start_step} with '
                         f'{config_lib.describe_changes(config_changes)}')
  return run, dp.replicate(state), start_step


def _train(run: _Run, state: TrainState, start_step: int, signals: stopping.StopSignals):
  """Steps from start_step until run.total_steps, the training budget, or a stop signal.

  Returns the state, the mean train images/s, the timer, and the last step taken.
  """
  config = run.config
  log_every = config_lib.every_steps(config.log_every_steps, run.steps_per_epoch)
  eval_every = config_lib.every_steps(config.eval_every_steps, run.steps_per_epoch)
  checkpoint_every = config_lib.every_steps(config.checkpoint_every_steps, run.steps_per_epoch)
  budget = config.train_budget_seconds
  timer = _Timer(_train_seconds_before(run.workdir, start_step))
  if budget > 0 and timer.train_seconds() >= budget:
    return state, math.nan, timer, start_step
  batches = run.pipeline.train_batches(start_step, run.total_steps)
  pending, checked, step = [], run.unlogged, start_step
  for step, batch in zip(range(start_step + 1, run.total_steps + 1), batches):
    state, step_metrics = run.p_train_step(state, batch)
    pending.append((step, step_metrics))
    if step == start_step + 1:
      jax.block_until_ready(state)  # Leave compilation out of the images/s figures.
      timer.restart(step)
    elif budget > 0:
      jax.block_until_ready(step_metrics)  # So the budget counts finished work, not dispatches.
    # The budget counts timed steps only, so a run always makes at least one after compiling.
    out_of_budget = budget > 0 and step > start_step + 1 and timer.train_seconds() >= budget
    stop_requested = signals.requested(step)  # Every step: processes agree on it in lockstep.
    is_last = step == run.total_steps or out_of_budget or stop_requested
    saving = step % checkpoint_every == 0 or is_last
    if step % log_every == 0 or saving:
      # Checked before any save, so no checkpoint holds a non-finite step; written only on the
      # log grid (and at the end), so every line averages a whole interval.
      checked += _check_steps(run, pending)
      pending = []
    if step % log_every == 0 or is_last:
      _log_train(run, checked, timer, step)
      checked = []
    if step % eval_every == 0 and not is_last:
      jax.block_until_ready(state)  # Dispatched steps count once they have run, not before.
      trained = {'train_seconds': timer.train_seconds(), 'epoch': step / run.steps_per_epoch}
      with timer.excluded():
        results = _evaluate_test_set(run, state)
        run.writer.write(step, {**results, **trained})
        run.progress.evaluated(step, results['test_accuracy'])
    if step % checkpoint_every == 0 or is_last:
      with timer.excluded():
        # The steps checked since the last line travel with the checkpoint, so a run resumed
        # from it writes the same whole-interval line as a run that never stopped.
        unlogged = [(s, {k: float(m[k][0]) for k in _LOGGED}, bool(ok)) for s, m, ok in checked]
        run.checkpointer.save(step, run.dp.unreplicate(state), {**run.meta, _UNLOGGED: unlogged})
    if is_last:
      break
  return state, timer.overall_rate(config.batch_size), timer, step


def _train_seconds_before(workdir: str, start_step: int) -> float:
  """Training seconds that earlier runs of this workdir spent reaching start_step."""
  if not start_step:
    return 0.0
  recorded = [r['train_seconds'] for r in metrics.read_metrics(workdir)
              if 'train_seconds' in r and r['step'] <= start_step]
  return recorded[-1] if recorded else 0.0


class _Timer:
  """Training images/s over the last logging interval and over the run, and training seconds.

  Compilation, evaluation and checkpointing are excluded, so the figures are the step's own.
  train_seconds() adds `before`, the seconds earlier runs of the same workdir trained.
  """

  def __init__(self, before: float = 0.0):
    self._before = before
    self.restart(0)

  def restart(self, step: int) -> None:
    self._first_step = self._last_step = step
    self._first_time = self._last_time = time.time()
    self._excluded = self._excluded_since_last = 0.0

  def train_seconds(self) -> float:
    if not self._first_step:  # Not started: nothing trained in this run yet.
      return self._before
    return self._before + time.time() - self._first_time - self._excluded

  @contextlib.contextmanager
  def excluded(self):
    start = time.time()
    yield
    self._excluded += time.time() - start
    self._excluded_since_last += time.time() - start

  def interval_rate(self, step: int, batch_size: int) -> float:
    now = time.time()
    seconds = now - self._last_time - self._excluded_since_last
    rate = (step - self._last_step) * batch_size / max(seconds, 1e-9)
    self._last_step, self._last_time, self._excluded_since_last = step, now, 0.0
    return rate

  def overall_rate(self, batch_size: int) -> float:
    steps = self._last_step - self._first_step
    seconds = self._last_time - self._first_time - (self._excluded - self._excluded_since_last)
    return steps * batch_size / max(seconds, 1e-9) if steps else math.nan


# Checkpoint meta: [(step, {metric: value}, finite)] of the steps not yet in a training line.
_UNLOGGED = 'unlogged_steps'
_AVERAGED = ('train_loss', 'train_accuracy')  # A training line's mean over its interval...
_LOGGED = _AVERAGED + ('learning_rate',)  # ...and the last step's rate.


def _check_steps(run: _Run, pending: list) -> list:
  """Fetches the pending steps' metrics and checks each for a non-finite loss or gradient:
  [(step, host metrics, finite)]."""
  fetched = [(s, jax.device_get(m)) for s, m in pending]
  return [(s, m, _check_finite(run, s, m)) for s, m in fetched]


def _log_train(run: _Run, checked: list, timer: _Timer, step: int) -> None:
  """Writes the mean of the checked steps since the last line (the finite ones, if any)."""
  finite = [m for _, m, ok in checked if ok]
  means = {k: float(np.mean([m[k][0] for m in finite or [m for _, m, _ in checked]]))
           for k in _AVERAGED}
  means['learning_rate'] = float(checked[-1][1]['learning_rate'][0])
  if run.config.skip_nonfinite_steps > 0:
    means['skipped_steps'] = len(checked) - len(finite)
  means['images_per_sec'] = timer.interval_rate(step, run.config.batch_size)
  means['train_seconds'] = timer.train_seconds()
  run.writer.write(step, means)
  run.progress.update(step, means['train_loss'], means['images_per_sec'], means['train_seconds'])


def _check_finite(run: _Run, step: int, step_metrics: dict) -> bool:
  """Whether `step` was finite; raises NonFiniteLossError unless skipping it is allowed.

  Raising here, before the loop saves, keeps every checkpoint finite.
  """
  if step_metrics['finite'][0]:
    run.nonfinite_streak = 0
    return True
  run.nonfinite_streak += 1
  limit = run.config.skip_nonfinite_steps
  if run.nonfinite_streak <= limit:
    return False
  newest = run.checkpointer.latest_step()
  kept = f'the newest checkpoint, step {newest}, is intact' if newest else 'nothing was saved'
  skipped = f' after skipping {limit} in a row' if limit else ''
  raise NonFiniteLossError(
      f'training loss or gradients became non-finite (loss {float(step_metrics["train_loss"][0])}) '
      f'at step {step}{skipped}; stopped, and {kept} (lower learning_rate, or set '
      'skip_nonfinite_steps)')

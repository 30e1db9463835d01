"""Training: the loop that runs a built run's steps, evaluates, checkpoints and logs.

`builder` assembles the run (model, optimiser, data-parallel steps from `steps`); the loop only
sees replicated states and sharded batches, never devices.
"""
import contextlib
import dataclasses
import functools
import math
import time
from typing import Callable

import jax
import numpy as np

from convjax import errors, parallel
from convjax.data import datasets, pipeline as pipeline_lib
from convjax.nn import conv_backend
from convjax.training import (baseline, builder, checkpoint, config as config_lib, detection,
                              finetune,
                              inputs, metrics, run_identity, steps, stopping,
                              workdir as workdir_lib)


class NonFiniteLossError(errors.UserError, FloatingPointError):
  """Training produced a NaN or Inf loss or gradient; the message names the step."""


def evaluate(p_eval_step: Callable, state: steps.TrainState, batches) -> dict:
  """test_loss, test_accuracy, test_top5_accuracy and num_test_examples over masked batches
  that hold every test example once (a pipeline's eval_batches())."""
  return _test_metrics([p_eval_step(state, batch) for batch in batches])


def evaluate_timed(p_eval_step: Callable, state: steps.TrainState, batches) -> dict:
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
  results = {'test_loss': totals['loss'] / count, 'test_accuracy': totals['correct'] / count,
             'test_top5_accuracy': totals['top5_correct'] / count,
             'num_test_examples': int(count)}
  for prefix in ('tta', 'ema'):  # config.tta_flip (image and mirror), config.ema_decay.
    if f'{prefix}_correct' in totals:
      results[f'{prefix}_test_loss'] = totals[f'{prefix}_loss'] / count
      results[f'{prefix}_test_accuracy'] = totals[f'{prefix}_correct'] / count
  return results


def _tta_name(config) -> str:
  """'flip TTA', 'shift TTA' or 'flip+shift TTA': the views config.tta_* averages."""
  views = [name for name, on in (('flip', config.tta_flip),
                                 ('shift', config.get('tta_translate', 0))) if on]
  return '+'.join(views) + ' TTA'


@dataclasses.dataclass
class _Loop:
  """What the loop needs besides the assembled run, set up once by `_setup`."""
  run: builder.Run
  workdir: str
  pipeline: pipeline_lib.Pipeline
  identity: run_identity.RunIdentity
  checkpointer: checkpoint.Checkpointer
  writer: metrics.MetricsWriter
  progress: metrics.Progress
  nonfinite_streak: int = 0  # Consecutive skipped steps so far (config.skip_nonfinite_steps).
  # Checked steps after the last training line, as restored from the checkpoint resumed from.
  unlogged: list = dataclasses.field(default_factory=list)
  peak_memory_bytes: int | None = None  # The compiled train step's, once it has run.

  @property
  def config(self):
    return self.run.config

  @functools.cached_property
  def checkpoint_meta(self) -> dict:
    """What every checkpoint of this run holds besides its unlogged steps (computed once)."""
    return self.identity.checkpoint_meta(self.config)


@dataclasses.dataclass(frozen=True)
class RunResult:
  """What a training run ends with.

  identity: what was trained, on what, at which commit (as config.json and checkpoints hold it).
  step: the last step trained, or found already trained.
  metrics: the final evaluation (test_loss, test_accuracy, test_top5_accuracy, num_test_examples,
    eval_images_per_sec, and ema_ and tta_ figures where the config asks for them), with
    train_seconds, wall_seconds (this run's, start to final figures) and epoch.
  train_images_per_sec: over this run's timed steps; nan when it timed none.
  peak_memory_bytes: per device, of the compiled train step, where XLA reports it and a step ran.
  """
  identity: run_identity.RunIdentity
  step: int
  metrics: dict
  train_images_per_sec: float
  peak_memory_bytes: int | None


@dataclasses.dataclass
class _Trained:
  """Where `_train` stopped: the replicated state, the last step taken, and its timer."""
  state: steps.TrainState
  last_step: int
  timer: '_Timer'


def train_and_evaluate(config, workdir: str, start_over: bool = False) -> RunResult:
  """Trains config.model on config.dataset, evaluating and checkpointing into `workdir`.

  Everything that can be checked is checked before the workdir is touched: the config, the
  data, the model's fit to the input, the workdir's usability, and that its checkpoints belong
  to this model and dataset (`start_over` instead moves an earlier run aside, see
  workdir.start_over). Then the run locks the workdir and resumes from its newest readable
  checkpoint, if any. It stops at the last step, once config.train_budget_seconds of training
  have run, or at a SIGTERM or SIGINT, after checkpointing that step.

  Returns the run's RunResult; raises stopping.Stopped when a signal stopped the run.
  """
  start_time = time.time()
  dp = builder.data_parallel(config)
  config_lib.validate(config, dp.num_devices)
  conv_backend.use_backend(config.conv_backend, dp.num_local_devices)
  if config.train_budget_seconds > 0 and parallel.process_count() > 1:
    # Each process would time itself and could stop at a different step, then deadlock.
    raise config_lib.ConfigError('train_budget_seconds needs a single process; '
                                 f'this run has {parallel.process_count()}')
  pipeline = inputs.create_pipeline(config, dp)
  identity = run_identity.RunIdentity.of_config(config, pipeline.image_shape)
  run = builder.build(config, dp, builder.DataSpec.of_pipeline(pipeline, identity.num_classes))
  workdir_lib.check_usable(workdir)
  found = None if start_over else run_identity.check_checkpoint(workdir, identity)
  config_changes = _check_resume(workdir, found, config)
  # Fine-tuning's weights are read and fitted before the workdir is touched, and only for a run
  # that starts at step 0: a resumed one continues from its own checkpoints.
  initial = (finetune.initial_variables(config, run.init_variables())
             if config.init_from and found is None else None)
  # Every process looks for checkpoints before any creates the directory: a process that looked
  # after would open a manager the others do not, and orbax's barriers would stop pairing up.
  parallel.barrier('checked_workdir')
  is_chief = parallel.process_index() == 0
  with workdir_lib.lock(workdir, enabled=is_chief):
    if start_over:
      _start_over(workdir, is_chief)
    loop, state, start_step = _setup(run, workdir, pipeline, identity, config_changes, initial)
    return _train_and_report(loop, state, start_step, start_time)


def _check_resume(workdir: str, found: tuple[int, dict] | None, config) -> dict:
  """Returns the resumable config fields that differ from the newest checkpoint's (`found`, its
  step and meta), {field: [old, new]}; raises when a field that shapes training differs (see
  config.RESUMABLE_FIELDS)."""
  if found is None or 'config' not in found[1]:  # Checkpoints before configs were saved in them.
    return {}
  step, saved = found
  return config_lib.check_resume(saved['config'], config_lib.flat(config), step, workdir)


def _start_over(workdir: str, is_chief: bool) -> None:
  moved = workdir_lib.start_over(workdir) if is_chief else None
  if moved:
    print(f'moved the earlier run in {workdir} to {moved}', flush=True)
  parallel.barrier('start_over')  # No process may look for checkpoints before they are gone.


def _train_and_report(loop: _Loop, state: steps.TrainState, start_step: int,
                      start_time: float) -> RunResult:
  """Trains from start_step, evaluates, writes the final record and prints the summary line."""
  config = loop.config
  try:
    with stopping.StopSignals() as signals:
      trained_to = _train(loop, state, start_step, signals)
    state, last_step = trained_to.state, trained_to.last_step
    if signals.received:  # The `finally` below waits for the checkpoint before this is reported.
      raise stopping.Stopped(signals.received, last_step)
    trained = {'train_seconds': trained_to.timer.train_seconds(),
               'epoch': last_step / loop.run.steps_per_epoch}
    if loop.peak_memory_bytes is not None:
      trained['peak_memory_bytes'] = loop.peak_memory_bytes
    final = {**_evaluate_test_set(loop, state, timed=True), **trained}
    if config.get('baseline'):  # Text only (config checks it), so the pipeline is in memory.
      final.update(baseline.evaluate(config, loop.pipeline.dataset))
    final['wall_seconds'] = time.time() - start_time  # This run's, from start to final figures.
    if last_step > start_step:  # Else this workdir's metrics already end with it.
      loop.writer.write(last_step, final)
  finally:
    loop.checkpointer.wait()
    loop.checkpointer.close()
    loop.writer.close()
    loop.progress.close()
  final['wall_seconds'] = time.time() - start_time
  train_rate = trained_to.timer.overall_rate(config.batch_size)
  noun = datasets.get_info(config.dataset).example_noun
  if math.isfinite(train_rate):
    speed = f'{train_rate:,.0f} train {noun}s/s'
  elif last_step > start_step:  # The first step compiles, so one step leaves nothing timed.
    speed = 'one step, too few to time'
  else:
    speed = f'already trained to step {start_step}'
  stopped = (f' (training budget of {config.train_budget_seconds:g} s reached at step {last_step})'
             if last_step < loop.run.total_steps else '')
  extra = ''.join(f', {label} {final[key]:.4f}' for key, label in (
      ('ema_test_accuracy', 'EMA'), ('tta_test_accuracy', _tta_name(config)),
      ('tta_test_AP', 'flip-test AP'), ('tta_test_AP50', 'AP50'), ('ema_test_AP', 'EMA AP'),
      ('baseline_test_accuracy', f'{config.baseline} baseline')) if key in final)
  loop.progress.message(
      f"done: {config.model} on {config.dataset}, {_headline(final)}"
      f"{extra} ({final['num_test_examples']} {noun}s), wall time {final['wall_seconds']:.1f} s, "
      f'{speed}{stopped}, convolutions by {conv_backend.backend_name(builder.compute_dtype(config))}')
  return RunResult(identity=loop.identity, step=last_step, metrics=final,
                   train_images_per_sec=train_rate, peak_memory_bytes=loop.peak_memory_bytes)


def _evaluate_test_set(loop: _Loop, state: steps.TrainState, timed: bool = False) -> dict:
  """The test split's metrics: classification's (`evaluate`, or `evaluate_timed`), or a
  detector's COCO AP (detection.evaluate)."""
  if loop.run.detection:
    truth, box_scales = loop.pipeline.detection_truth()
    return detection.evaluate(loop.run.p_eval_step, state, loop.pipeline.eval_batches(), truth,
                              box_scales)
  return (evaluate_timed if timed else evaluate)(loop.run.p_eval_step, state,
                                                 loop.pipeline.eval_batches())


def _headline(results: dict) -> str:
  """The figure a run is judged by: 'test accuracy 0.9123', or a detector's 'test AP 0.7012,
  AP50 0.9501'."""
  if 'test_AP' in results:
    return f"test AP {results['test_AP']:.4f}, AP50 {results['test_AP50']:.4f}"
  return f"test accuracy {results['test_accuracy']:.4f}"


# Progress lines' rate unit, by example noun.
_RATE_UNIT = {'image': 'img', 'clip': 'clip', 'text': 'text'}


def _setup(run: builder.Run, workdir: str, pipeline: pipeline_lib.Pipeline,
           identity: run_identity.RunIdentity, config_changes: dict,
           initial: tuple[dict, str] | None) -> tuple[_Loop, steps.TrainState, int]:
  """Returns the loop, the replicated state to start from and its step. The state is the newest
  checkpoint's, else `initial`'s (finetune.initial_variables: variables and what they are),
  else the random initialisation."""
  config, dp = run.config, run.dp
  checkpointer = checkpoint.Checkpointer(workdir, config.max_checkpoints_to_keep)
  try:
    # `initial` comes only with no checkpoint to restore; either way the state is the target.
    state = run.init_state(initial[0] if initial else None)
    start_step, state, saved_meta = checkpointer.restore_latest(state) or (0, state, {})
    unlogged = saved_meta.get(_UNLOGGED, [])
  except Exception:
    checkpointer.close()  # The loop's `finally` closes it once set-up has succeeded.
    raise
  is_chief = parallel.process_index() == 0
  if is_chief:
    run_identity.write(workdir, identity, config)
  loop = _Loop(
      run=run, workdir=workdir, pipeline=pipeline, identity=identity, checkpointer=checkpointer,
      writer=metrics.MetricsWriter(workdir, start_step, enabled=is_chief),
      progress=metrics.Progress(start_step, run.total_steps, enabled=is_chief,
                                budget_seconds=config.train_budget_seconds,
                                unit=_RATE_UNIT[datasets.get_info(config.dataset).example_noun]),
      # float32, the step's own dtype, so the interval's mean rounds as it would have.
      unlogged=[(s, {k: np.array([v], np.float32) for k, v in m.items()}, ok)
                for s, m, ok in unlogged])
  dtype = builder.compute_dtype(config)
  loop.writer.write(start_step, {
      'event': 'start', 'num_devices': dp.num_devices, 'num_processes': parallel.process_count(),
      'global_batch_size': config.batch_size,
      'per_device_batch_size': config.batch_size // dp.num_devices,
      'total_steps': run.total_steps, 'model': config.model, 'dataset': config.dataset,
      'conv_backend': conv_backend.backend_name(dtype),
      'config_changes': config_changes if start_step else {},
      **({'initialised_from': initial[1]} if initial and not start_step else {})})
  loop.progress.message(f'training on {parallel.describe(dp)}{builder.device_note(config, dp)}')
  precision_note = conv_backend.backend_note(dtype)
  if precision_note:
    loop.progress.message(f'half_precision: {precision_note}')
  if initial and not start_step:
    loop.progress.message(f'fine-tuning: {initial[1]}')
  training = finetune.describe(config)
  if training:
    loop.progress.message(training)
  if start_step and config_changes:
    loop.progress.message(f'resuming at step {start_step} with '
                          f'{config_lib.describe_changes(config_changes)}')
  return loop, dp.replicate(state), start_step


def _train(loop: _Loop, state: steps.TrainState, start_step: int,
           signals: stopping.StopSignals) -> _Trained:
  """Steps from start_step until loop.run.total_steps, the training budget, or a stop signal,
  logging, evaluating and checkpointing on the config's intervals."""
  config = loop.config
  log_every = config_lib.every_steps(config.log_every_steps, loop.run.steps_per_epoch)
  eval_every = config_lib.every_steps(config.eval_every_steps, loop.run.steps_per_epoch)
  checkpoint_every = config_lib.every_steps(config.checkpoint_every_steps,
                                            loop.run.steps_per_epoch)
  budget = config.train_budget_seconds
  timer = _Timer(_train_seconds_before(loop.workdir, start_step))
  if budget > 0 and timer.train_seconds() >= budget:
    return _Trained(state, start_step, timer)
  batches = loop.pipeline.train_batches(start_step, loop.run.total_steps)
  pending, checked, step = [], loop.unlogged, start_step
  for step, batch in zip(range(start_step + 1, loop.run.total_steps + 1), batches):
    state, step_metrics = loop.run.p_train_step(state, batch)
    pending.append((step, step_metrics))
    if step == start_step + 1:
      jax.block_until_ready(state)  # Leave compilation out of the images/s figures.
      # The compilation that just ran, reused: its memory costs no second compile.
      loop.peak_memory_bytes = loop.run.train_step_memory_bytes(state, batch)
      timer.restart(step)
    elif budget > 0:
      jax.block_until_ready(step_metrics)  # So the budget counts finished work, not dispatches.
    # The budget counts timed steps only, so a run always makes at least one after compiling.
    out_of_budget = budget > 0 and step > start_step + 1 and timer.train_seconds() >= budget
    stop_requested = signals.requested(step)  # Every step: processes agree on it in lockstep.
    is_last = step == loop.run.total_steps or out_of_budget or stop_requested
    saving = step % checkpoint_every == 0 or is_last
    if step % log_every == 0 or saving:
      # Checked before any save, so no checkpoint holds a non-finite step; written only on the
      # log grid (and at the end), so every line averages a whole interval.
      checked += _check_steps(loop, pending)
      pending = []
    if step % log_every == 0 or is_last:
      _log_train(loop, checked, timer, step)
      checked = []
    # The run's last step and a budget's end get the final evaluation instead; a stop signal's
    # step does not, so it evaluates here, or a resumed run's records would miss this one.
    if step % eval_every == 0 and not (step == loop.run.total_steps or out_of_budget):
      jax.block_until_ready(state)  # Dispatched steps count once they have run, not before.
      trained = {'train_seconds': timer.train_seconds(), 'epoch': step / loop.run.steps_per_epoch}
      with timer.excluded():
        results = _evaluate_test_set(loop, state)
        loop.writer.write(step, {**results, **trained})
        loop.progress.evaluated(step, _headline(results))
    if step % checkpoint_every == 0 or is_last:
      with timer.excluded():
        # The steps checked since the last line travel with the checkpoint, so a run resumed
        # from it writes the same whole-interval line as a run that never stopped.
        unlogged = [(s, {k: float(v[0]) for k, v in m.items() if k != 'finite'}, bool(ok))
                    for s, m, ok in checked]
        loop.checkpointer.save(step, loop.run.dp.unreplicate(state),
                               {**loop.checkpoint_meta, _UNLOGGED: unlogged})
    if is_last:
      break
  return _Trained(state, step, timer)


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
# A training line holds the mean over its interval of every step metric but these two, and the
# last step's learning rate.
_NOT_AVERAGED = ('learning_rate', 'finite')


def _check_steps(loop: _Loop, pending: list) -> list:
  """Fetches the pending steps' metrics and checks each for a non-finite loss or gradient:
  [(step, host metrics, finite)]."""
  fetched = [(s, jax.device_get(m)) for s, m in pending]
  return [(s, m, _check_finite(loop, s, m)) for s, m in fetched]


def _log_train(loop: _Loop, checked: list, timer: _Timer, step: int) -> None:
  """Writes the mean of the checked steps since the last line (the finite ones, if any)."""
  finite = [m for _, m, ok in checked if ok]
  averaged = finite or [m for _, m, _ in checked]
  means = {k: float(np.mean([m[k][0] for m in averaged]))
           for k in averaged[0] if k not in _NOT_AVERAGED}
  means['learning_rate'] = float(checked[-1][1]['learning_rate'][0])
  if loop.config.skip_nonfinite_steps > 0:
    means['skipped_steps'] = len(checked) - len(finite)
  means['images_per_sec'] = timer.interval_rate(step, loop.config.batch_size)
  means['train_seconds'] = timer.train_seconds()
  loop.writer.write(step, means)
  loop.progress.update(step, means['train_loss'], means['images_per_sec'], means['train_seconds'])


def _check_finite(loop: _Loop, step: int, step_metrics: dict) -> bool:
  """Whether `step` was finite; raises NonFiniteLossError unless skipping it is allowed.

  Raising here, before the loop saves, keeps every checkpoint finite.
  """
  if step_metrics['finite'][0]:
    loop.nonfinite_streak = 0
    return True
  loop.nonfinite_streak += 1
  limit = loop.config.skip_nonfinite_steps
  if loop.nonfinite_streak <= limit:
    return False
  newest = loop.checkpointer.latest_step()
  kept = f'the newest checkpoint, step {newest}, is intact' if newest else 'nothing was saved'
  skipped = f' after skipping {limit} in a row' if limit else ''
  raise NonFiniteLossError(
      f'training loss or gradients became non-finite (loss {float(step_metrics["train_loss"][0])}) '
      f'at step {step}{skipped}; stopped, and {kept} (lower learning_rate, or set '
      'skip_nonfinite_steps)')

import functools
import json
import os
import signal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from convjax import parallel
from convjax.models import input_shapes
from convjax.data import datasets, pipeline
from convjax.training import (builder, checkpoint, config as config_lib, loop, metrics,
                              run_identity, steps, stopping)
from tests.conftest import NUM_TEST_DEVICES


def read_lines(workdir, key):
  return [r for r in metrics.read_metrics(workdir) if key in r]


def restore_params(workdir):
  """(step, params) of the newest checkpoint in workdir, as host arrays."""
  saved = checkpoint.Checkpointer(workdir, max_to_keep=3)
  step = saved.latest_step()
  params = saved.restore(step)['params']
  saved.close()
  return step, params


def assert_trees_equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_end_to_end_writes_the_workdir(tmp_path, digits_config):
  workdir = str(tmp_path / 'run')
  result = loop.train_and_evaluate(digits_config, workdir)
  records = metrics.read_metrics(workdir)
  first = records[0]
  assert first['num_devices'] == NUM_TEST_DEVICES and first['num_processes'] == 1
  assert first['global_batch_size'] == 64 and first['per_device_batch_size'] == 16
  train_lines = read_lines(workdir, 'train_loss')
  assert [r["step"] for r in train_lines] == [4, 8, 12]  # The log grid only: whole intervals.
  for r in train_lines:
    assert {'train_accuracy', 'learning_rate', 'images_per_sec'} <= set(r)
  eval_lines = read_lines(workdir, 'test_accuracy')
  assert [r['step'] for r in eval_lines] == [6, 12]
  assert all(r['num_test_examples'] == 359 for r in eval_lines)
  final = result.metrics
  assert final['num_test_examples'] == 359 and 0 <= final['test_top5_accuracy'] <= 1
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['12', '6']
  # One identity, in the result, config.json and every checkpoint's meta.
  assert result.step == 12 and result.identity == run_identity.RunIdentity(
      model='lenet5', dataset='digits', num_classes=10, input_shape=(28, 28, 1),
      commit=run_identity.checkout_commit())
  identity, config = run_identity.read(workdir)
  assert identity == result.identity  # The config's own fields, with the classes resolved:
  assert config_lib.flat(config) == {**config_lib.flat(digits_config), 'num_classes': 10}
  meta = checkpoint.newest_meta(workdir)[1]
  assert {k: meta[k] for k in result.identity.as_json()} == result.identity.as_json()
  assert os.listdir(os.path.join(workdir, 'tensorboard'))


def test_evaluation_counts_every_example_for_any_batch_and_device_count(tmp_path, digits_config):
  digits_config.num_train_steps = 1
  digits_config.eval_batch_size = 12  # 359 = 29 * 12 + 11: the last batch is padded.
  digits_config.num_devices = 3
  digits_config.batch_size = 63
  final = loop.train_and_evaluate(digits_config, str(tmp_path)).metrics
  assert final['num_test_examples'] == 359


def test_all_devices_means_the_most_the_batch_splits_over(tmp_path, digits_config, capsys):
  digits_config.update(num_train_steps=1, batch_size=66, eval_batch_size=100)  # 66 = 3 * 22.
  result = loop.train_and_evaluate(digits_config, str(tmp_path))
  assert metrics.read_metrics(str(tmp_path))[0]['num_devices'] == 3
  assert result.metrics['num_test_examples'] == 359 and result.identity.input_shape == (28, 28, 1)
  out = capsys.readouterr().out
  assert 'batch_size=66 does not split over all 4, so num_devices=-1 uses 3' in out
  assert 'evaluating in batches of 102' in out
  assert result.peak_memory_bytes > 0  # From the step training compiled (compare's column).
  assert metrics.read_metrics(str(tmp_path))[-1]['peak_memory_bytes'] == result.peak_memory_bytes


def test_one_and_four_devices_give_the_same_losses(tmp_path, digits_config):
  digits_config.log_every_steps = 1
  losses = {}
  for num_devices in (1, NUM_TEST_DEVICES):
    digits_config.num_devices = num_devices
    workdir = str(tmp_path / str(num_devices))
    loop.train_and_evaluate(digits_config, workdir)
    losses[num_devices] = [r['train_loss'] for r in read_lines(workdir, 'train_loss')]
  assert len(losses[1]) == 12
  np.testing.assert_allclose(losses[1], losses[NUM_TEST_DEVICES], rtol=2e-5)


def test_crash_and_rerun_ends_exactly_where_a_straight_run_ends(tmp_path, digits_config, monkeypatch):
  straight, resumed = str(tmp_path / 'straight'), str(tmp_path / 'resumed')
  loop.train_and_evaluate(digits_config, straight)

  real_train_batches = pipeline.InMemoryPipeline.train_batches
  def crash_at_step_9(self, start_step, stop_step):
    for step, batch in zip(range(start_step, stop_step), real_train_batches(self, start_step, stop_step)):
      if step == 9:
        raise KeyboardInterrupt('simulated kill')
      yield batch
  monkeypatch.setattr(pipeline.InMemoryPipeline, 'train_batches', crash_at_step_9)
  with pytest.raises(KeyboardInterrupt):
    loop.train_and_evaluate(digits_config, resumed)
  monkeypatch.setattr(pipeline.InMemoryPipeline, 'train_batches', real_train_batches)
  loop.train_and_evaluate(digits_config, resumed)  # Resumes from the step-6 checkpoint.

  assert_trees_equal(restore_params(straight), restore_params(resumed))
  steps = [r['step'] for r in read_lines(resumed, 'train_loss')]
  assert steps == sorted(set(steps)), 'a step was logged twice'
  straight_losses = [r['train_loss'] for r in read_lines(straight, 'train_loss')]
  assert [r['train_loss'] for r in read_lines(resumed, 'train_loss')] == straight_losses


def test_extending_a_finished_run_matches_a_longer_straight_run(tmp_path, digits_config):
  digits_config.lr_schedule = 'constant'  # Cosine's shape depends on the total step count.
  straight, extended = str(tmp_path / 'straight'), str(tmp_path / 'extended')
  loop.train_and_evaluate(digits_config, straight)
  digits_config.num_train_steps = 6
  loop.train_and_evaluate(digits_config, extended)
  digits_config.num_train_steps = 12
  loop.train_and_evaluate(digits_config, extended)
  assert_trees_equal(restore_params(straight), restore_params(extended))


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, digits_config):
  # A step schedule that multiplies the rate by 1e12 after step 6 (digits: 22 steps an epoch).
  digits_config.lr_schedule, digits_config.lr_decay_epochs = 'step', (0.3,)
  digits_config.lr_decay_factor = 1e12
  good, diverged = str(tmp_path / 'good'), str(tmp_path / 'diverged')
  digits_config.num_train_steps = 6
  loop.train_and_evaluate(digits_config, good)
  digits_config.num_train_steps = 12
  with pytest.raises(loop.NonFiniteLossError, match=r'at step (7|8)\b'):
    loop.train_and_evaluate(digits_config, diverged)
  assert_trees_equal(restore_params(diverged), restore_params(good))
  assert sorted(os.listdir(os.path.join(diverged, 'checkpoints'))) == ['6']


def test_a_workdir_of_another_model_is_refused_untouched(tmp_path, digits_config):
  workdir = str(tmp_path)
  digits_config.num_train_steps = 6
  loop.train_and_evaluate(digits_config, workdir)
  metrics_before = open(os.path.join(workdir, 'metrics.jsonl')).read()
  saver = checkpoint.Checkpointer(workdir, max_to_keep=3)
  step, state = 7, {'w': np.zeros(3)}
  saver.save(step, state, {'model': 'vgg16', 'num_classes': 10, 'input_shape': [28, 28, 1]})
  saver.wait(), saver.close()
  with pytest.raises(checkpoint.IncompatibleCheckpointError, match="model='vgg16'"):
    loop.train_and_evaluate(digits_config, workdir)
  assert open(os.path.join(workdir, 'metrics.jsonl')).read() == metrics_before


def test_the_built_step_lowers_the_loss_on_a_fixed_batch(digits_config):
  digits_config.update(batch_size=32, learning_rate=3e-3, lr_schedule='constant')
  dp = parallel.DataParallel()
  split = datasets.load('digits', image_size=28).train
  run = builder.build(digits_config, dp, builder.DataSpec((28, 28, 1), 10, (0.3,), (0.4,),
                                                         len(split)))
  batch = dp.shard({'image': split.images[:32], 'label': split.labels[:32]})
  state = dp.replicate(run.init_state())
  losses = []
  for _ in range(25):
    state, step_metrics = run.p_train_step(state, batch)
    losses.append(float(step_metrics['train_loss'][0]))
  assert losses[-1] < 0.2 * losses[0]
  assert step_metrics['learning_rate'][0] == np.float32(3e-3)
  # Its memory figure reuses the compilation the steps ran (tests/test_parallel.py).
  assert run.train_step_memory_bytes(state, batch) > 0


class TinyBatchNormNet(nn.Module):
  """A test-only model with batch norm and dropout, to check the step's state handling."""
  num_classes: int = 10
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(4, (3, 3), dtype=self.dtype)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.5)(x)
    x = nn.Dropout(0.5, deterministic=not train)(nn.relu(x))
    return nn.Dense(self.num_classes)(x.mean((1, 2)))


def test_batch_stats_are_averaged_so_every_replica_holds_the_same_state():
  dp = parallel.DataParallel()
  state = steps.create_train_state(TinyBatchNormNet(), optax.sgd(0.1), (8, 8, 1), seed=0)
  initial_mean = state.batch_stats['BatchNorm_0']['mean']
  # Each device gets differently scaled images, so local batch statistics differ.
  images = (np.arange(NUM_TEST_DEVICES * 4)[:, None, None, None] * np.ones((1, 8, 8, 1)) * 15)
  batch = dp.shard({'image': images.astype(np.uint8),
                    'label': np.zeros(NUM_TEST_DEVICES * 4, np.int32)})
  normalize = functools.partial(datasets.normalize, mean=(0.,), std=(1.,))
  step = dp.pmap_step(functools.partial(steps.train_step, normalize=normalize,
                                        schedule=optax.constant_schedule(0.1)))
  new_state, _ = step(dp.replicate(state), batch)
  means = [np.asarray(shard.data)
           for shard in new_state.batch_stats['BatchNorm_0']['mean'].addressable_shards]
  assert len(means) == NUM_TEST_DEVICES
  for replica in means[1:]:
    np.testing.assert_array_equal(replica, means[0])
  assert not np.allclose(means[0], initial_mean)


def test_resuming_with_settings_that_shape_training_is_refused_naming_each(tmp_path, digits_config):
  workdir = str(tmp_path)
  digits_config.num_train_steps = 6
  loop.train_and_evaluate(digits_config, workdir)
  before = {name: open(os.path.join(workdir, name)).read() for name in ('config.json', 'metrics.jsonl')}
  digits_config.optimizer, digits_config.learning_rate = 'sgd', 0.01
  digits_config.augment.crop_padding = 2
  with pytest.raises(config_lib.ResumeError) as refused:
    loop.train_and_evaluate(digits_config, workdir)
  message = str(refused.value)
  for change in ("optimizer 'adam' -> 'sgd'", 'learning_rate 0.001 -> 0.01',
                 'augment.crop_padding 0 -> 2', '--start_over'):
    assert change in message
  assert '\n' not in message
  assert before == {name: open(os.path.join(workdir, name)).read() for name in before}


def test_resumable_changes_are_accepted_and_recorded_per_segment(tmp_path, digits_config):
  workdir = str(tmp_path)
  digits_config.num_train_steps = 6
  loop.train_and_evaluate(digits_config, workdir)
  digits_config.num_train_steps, digits_config.num_devices = 12, 2
  digits_config.eval_batch_size = 50
  loop.train_and_evaluate(digits_config, workdir)
  starts = [r for r in metrics.read_metrics(workdir) if r.get('event') == 'start']
  assert [(r['step'], r['num_devices']) for r in starts] == [(0, NUM_TEST_DEVICES), (6, 2)]
  assert starts[0]['config_changes'] == {}
  assert starts[1]['config_changes'] == {'num_train_steps': [6, 12], 'num_devices': [-1, 2],
                                         'eval_batch_size': [100, 50]}
  saved = json.load(open(os.path.join(workdir, 'config.json')))
  assert (saved['num_train_steps'], saved['learning_rate']) == (12, digits_config.learning_rate)


def test_half_precision_trains_with_float32_master_weights(tmp_path, digits_config):
  digits_config.half_precision = True
  digits_config.num_train_steps = 6
  final = loop.train_and_evaluate(digits_config, str(tmp_path)).metrics
  assert np.isfinite(final['test_loss']) and final['num_test_examples'] == 359
  _, params = restore_params(str(tmp_path))
  assert {p.dtype for p in jax.tree.leaves(params)} == {np.dtype('float32')}
  losses = [r['train_loss'] for r in read_lines(str(tmp_path), 'train_loss')]
  assert losses[-1] < losses[0]


def test_rerunning_a_finished_run_reevaluates_without_duplicating_metrics(tmp_path, digits_config):
  digits_config.num_train_steps = 6
  first = loop.train_and_evaluate(digits_config, str(tmp_path))
  again = loop.train_and_evaluate(digits_config, str(tmp_path))
  assert again.metrics['test_accuracy'] == first.metrics['test_accuracy']
  eval_steps = [r['step'] for r in read_lines(str(tmp_path), 'test_accuracy')]
  assert eval_steps == [6]


def test_an_input_too_small_for_the_model_stops_before_any_file(tmp_path, digits_config):
  digits_config.model = 'alexnet'
  digits_config.image_size = None  # digits are 8x8: AlexNet's pools leave nothing.
  workdir = str(tmp_path / 'run')
  with pytest.raises(input_shapes.InputShapeError, match=r'layer Pool_2 \(Pool\) would output an empty map: 1x1x256 -> 0x0x256; .*too small for this model \(--config.image_size=15 or larger fits\)$'):
    loop.train_and_evaluate(digits_config, workdir)
  assert not os.path.exists(workdir)


def test_aux_loss_weight_needs_a_model_with_auxiliary_heads(tmp_path, digits_config):
  digits_config.aux_loss_weight = 0.3
  with pytest.raises(config_lib.ConfigError, match="'lenet5' has none"):
    loop.train_and_evaluate(digits_config, str(tmp_path / 'run'))


def test_metrics_hold_strict_json_when_a_rate_cannot_be_measured(tmp_path, digits_config):
  digits_config.eval_batch_size = 400  # One batch holds all 359 test images: no rate to time.
  digits_config.num_train_steps = 6
  final = loop.train_and_evaluate(digits_config, str(tmp_path)).metrics
  assert 'eval_images_per_sec' not in final

  def refuse(constant):
    raise ValueError(f'{constant} in metrics.jsonl')
  with open(os.path.join(str(tmp_path), 'metrics.jsonl')) as f:
    records = [json.loads(line, parse_constant=refuse) for line in f]
  assert not any('eval_images_per_sec' in r for r in records)


def test_json_writers_turn_unmeasured_values_into_null():
  text = metrics.to_json({'a': float('nan'), 'b': np.float32('inf'), 'c': [1.5, np.nan],
                          'd': np.int64(3)})
  assert json.loads(text) == {'a': None, 'b': None, 'c': [1.5, None], 'd': 3}


def test_the_suggested_image_size_is_the_smallest_that_fits(digits_config):
  digits_config.model = 'alexnet'
  for size, fits in ((14, False), (15, True)):
    try:
      builder.create_model(digits_config, 10, (size, size, 1))
      assert fits, size
    except input_shapes.InputShapeError:
      assert not fits, size


def test_progress_eta_is_the_budgets_and_evaluations_print_test_accuracy(capsys, monkeypatch):
  clock = iter([0.0, 10.0, 10.0])
  monkeypatch.setattr(metrics.time, 'time', lambda: next(clock))
  progress = metrics.Progress(0, 4680, budget_seconds=60.0)
  progress.update(13, 0.5, 1000.0, train_seconds=10.0)  # Steps alone would say about an hour.
  progress.evaluated(13, 'test accuracy 0.8512')
  lines = capsys.readouterr().out.splitlines()
  assert lines == ['step 13/4680  loss 0.5000  1,000 img/s  ETA 50s',
                   'step 13/4680  test accuracy 0.8512']


def test_a_stop_at_an_evaluation_step_still_evaluates_it(tmp_path, digits_config, monkeypatch):
  """A signal's step is checkpointed and the run ends without the final evaluation, so an
  evaluation due at that step runs first: the resumed run starts after it and never would."""
  def requested(signals, step):
    if step == 6:  # digits_config evaluates every 6 steps.
      signals.received = signal.SIGTERM
    return signals.received is not None
  monkeypatch.setattr(stopping.StopSignals, 'requested', requested)
  with pytest.raises(stopping.Stopped):
    loop.train_and_evaluate(digits_config, str(tmp_path))
  monkeypatch.undo()
  loop.train_and_evaluate(digits_config, str(tmp_path))
  assert [r['step'] for r in read_lines(str(tmp_path), 'test_accuracy')] == [6, 12]

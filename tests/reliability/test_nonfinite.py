"""A loss that turns NaN or Inf stops training at the step where it happened, with the newest
checkpoint untouched; skip_nonfinite_steps skips such steps instead."""
import math
import os

import jax
import numpy as np

from tests.reliability import harness

DIVERGE = ['--config.learning_rate=1e9', f'--config.num_train_steps={harness.STEPS + 20}']


def test_a_non_finite_loss_stops_with_the_step_and_the_last_checkpoint_intact(
    reference_copy, cache_dir):
  checkpoints = os.path.join(reference_copy, 'checkpoints')
  before = harness.tree_digest(checkpoints)

  result = harness.run(reference_copy, *DIVERGE, cache_dir=cache_dir)

  assert result.returncode == 1
  message = result.stderr.strip()
  assert len(message.splitlines()) == 1, message
  assert message.startswith('error: training loss or gradients became non-finite')
  step = int(message.split(' at step ')[1].split(';')[0])
  assert harness.STEPS < step <= harness.STEPS + 20
  assert f'the newest checkpoint, step {harness.STEPS}, is intact' in message
  assert harness.tree_digest(checkpoints) == before
  assert harness.latest_train_step(reference_copy) == step - 1, 'finite steps before it are logged'


def test_skip_nonfinite_steps_keeps_the_parameters_finite(reference_copy, cache_dir):
  result = harness.run(reference_copy, *DIVERGE, '--config.skip_nonfinite_steps=100',
                       cache_dir=cache_dir)

  assert result.returncode == 0, result.stderr
  records = [r for r in harness.records_without_timings(reference_copy)
             if r['step'] > harness.STEPS and 'train_loss' in r]
  assert sum(r['skipped_steps'] for r in records) > 0
  step, state = harness.newest_state(reference_copy)
  assert step == harness.STEPS + 20
  assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(state['params']))
  assert all(math.isfinite(r['train_loss']) or r['skipped_steps'] == 1 for r in records)


def test_more_consecutive_non_finite_steps_than_allowed_stop_the_run(reference_copy, cache_dir):
  result = harness.run(reference_copy, *DIVERGE, '--config.skip_nonfinite_steps=2',
                       cache_dir=cache_dir)
  assert result.returncode == 1
  assert 'after skipping 2 in a row' in result.stderr

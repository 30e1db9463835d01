"""A loss that turns NaN or Inf stops training at the step where it happened, with the newest
checkpoint untouched; skip_nonfinite_steps skips such steps instead."""
import math
import os

import jax
import numpy as np
import pytest

from tests.reliability import harness

pytestmark = pytest.mark.slow  # Every test here starts processes.

# Digits has 22 steps an epoch: from step STEPS + 5 the rate is multiplied by 1e12 and the loss
# diverges within a few steps. The schedule is part of the run's config from its first step, as
# a resumed run may not change it.
BOUNDARY_EPOCH = (harness.STEPS + 5) / 22
DIVERGING = ['--config.lr_schedule=step', f'--config.lr_decay_epochs=({BOUNDARY_EPOCH},)',
             '--config.lr_decay_factor=1e12']
LONGER = f'--config.num_train_steps={harness.STEPS + 20}'


@pytest.fixture
def before_divergence(tmp_path, cache_dir):
  """A workdir trained to harness.STEPS under the diverging schedule, still finite."""
  workdir = str(tmp_path / 'run')
  result = harness.run(workdir, *DIVERGING, cache_dir=cache_dir)
  assert result.returncode == 0, result.stderr
  return workdir


def test_a_non_finite_loss_stops_with_the_step_and_the_last_checkpoint_intact(
    before_divergence, cache_dir):
  checkpoints = os.path.join(before_divergence, 'checkpoints')
  before = harness.tree_digest(checkpoints)

  result = harness.run(before_divergence, *DIVERGING, LONGER, cache_dir=cache_dir)

  assert result.returncode == 1
  message = result.stderr.strip()
  assert len(message.splitlines()) == 1, message
  assert message.startswith('error: training loss or gradients became non-finite')
  step = int(message.split(' at step ')[1].split(';')[0])
  assert harness.STEPS + 5 < step <= harness.STEPS + 20
  assert f'the newest checkpoint, step {harness.STEPS}, is intact' in message
  assert harness.tree_digest(checkpoints) == before
  assert harness.latest_train_step(before_divergence) == step - 1, 'finite steps before it are logged'


def test_skip_nonfinite_steps_keeps_the_parameters_finite(before_divergence, cache_dir):
  result = harness.run(before_divergence, *DIVERGING, LONGER, '--config.skip_nonfinite_steps=100',
                       cache_dir=cache_dir)

  assert result.returncode == 0, result.stderr
  records = [r for r in harness.records_without_timings(before_divergence)
             if r['step'] > harness.STEPS and 'train_loss' in r]
  assert sum(r['skipped_steps'] for r in records) > 0
  step, state = harness.newest_state(before_divergence)
  assert step == harness.STEPS + 20
  assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(state['params']))
  # An interval of skipped steps only has no loss to average: null, as JSON has no NaN.
  assert all(r['train_loss'] is None if r['skipped_steps'] == 1 else math.isfinite(r['train_loss'])
             for r in records)


def test_more_consecutive_non_finite_steps_than_allowed_stop_the_run(before_divergence, cache_dir):
  result = harness.run(before_divergence, *DIVERGING, LONGER, '--config.skip_nonfinite_steps=2',
                       cache_dir=cache_dir)
  assert result.returncode == 1
  assert 'after skipping 2 in a row' in result.stderr

"""Runs killed, terminated or interrupted mid-training, then rerun with the same command, end
bitwise where an uninterrupted run ends, with whole, unduplicated metrics."""
import os
import random
import signal

import pytest

from tests.reliability import harness

pytestmark = pytest.mark.slow  # Every test here starts processes.


def random_step(low: int, high: int) -> int:
  """A step drawn afresh each session; the seed is printed so a failure can be replayed."""
  seed = int(os.environ.get('CONVJAX_FAULT_SEED', random.randrange(2**32)))
  print(f'CONVJAX_FAULT_SEED={seed}')
  return random.Random(seed).randint(low, high)


def test_sigkill_at_a_random_step_then_rerun_matches_a_straight_run(reference, tmp_path, cache_dir):
  workdir = str(tmp_path / 'run')
  kill_step = random_step(2, harness.STEPS - 40)
  status, _, _ = harness.interrupt_at(workdir, kill_step, signal.SIGKILL, cache_dir)
  assert status == -signal.SIGKILL
  # The kill left the lock file behind; a torn last line is what a kill mid-write leaves.
  assert os.path.exists(os.path.join(workdir, 'lock'))
  with open(os.path.join(workdir, 'metrics.jsonl'), 'a') as f:
    f.write('{"step": 99999, "train_lo')

  result = harness.run(workdir, cache_dir=cache_dir)

  assert result.returncode == 0, result.stderr
  assert 'warning: cleared a stale lock of process' in result.stderr
  assert not os.path.exists(os.path.join(workdir, 'lock'))
  _, params = harness.newest_state(workdir)
  harness.assert_bitwise_equal(params, harness.newest_state(reference)[1])
  harness.assert_metrics_whole_and_unique(workdir)
  assert harness.records_without_timings(workdir) == harness.records_without_timings(reference)


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT], ids=['SIGTERM', 'SIGINT'])
def test_a_stop_signal_checkpoints_the_current_step_and_a_rerun_continues(
    reference, tmp_path, cache_dir, signum):
  workdir = str(tmp_path / 'run')
  # Not on a checkpoint step, so the checkpoint can only come from the signal.
  stop_step = random_step(2, harness.STEPS - 40)
  stop_step += stop_step % harness.CHECKPOINT_EVERY == 0
  status, out, err = harness.interrupt_at(workdir, stop_step, signum, cache_dir)

  assert status == 128 + signum, err
  name = signal.Signals(signum).name
  stopped = int(out.split(f'stopped by {name} at step ')[1].split(':')[0])
  assert stopped >= stop_step and err == ''
  assert harness.newest_state(workdir)[0] == stopped
  assert harness.latest_train_step(workdir) == stopped
  assert not os.path.exists(os.path.join(workdir, 'lock'))

  result = harness.run(workdir, cache_dir=cache_dir)
  assert result.returncode == 0, result.stderr
  harness.assert_bitwise_equal(harness.newest_state(workdir)[1], harness.newest_state(reference)[1])
  harness.assert_metrics_whole_and_unique(workdir)
  assert harness.records_without_timings(workdir) == harness.records_without_timings(reference)


def test_the_same_config_seed_and_devices_give_identical_metrics(reference, tmp_path, cache_dir):
  again = str(tmp_path / 'again')
  assert harness.run(again, cache_dir=cache_dir).returncode == 0
  assert harness.records_without_timings(again) == harness.records_without_timings(reference)
  harness.assert_bitwise_equal(harness.newest_state(again)[1], harness.newest_state(reference)[1])

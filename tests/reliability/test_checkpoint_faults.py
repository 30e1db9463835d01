"""Checkpoints cut short by a crash, or damaged on disk, are never restored: training falls back
to the newest good one, says so, and still ends bitwise where a straight run ends."""
import glob
import os
import subprocess
import sys

import pytest

from tests.reliability import harness

pytestmark = pytest.mark.slow  # Every test here starts processes.

CRASH_STEP = 2 * harness.CHECKPOINT_EVERY


@pytest.mark.parametrize('moment', ['writing', 'committing'])
def test_a_crash_while_saving_leaves_no_checkpoint_to_restore(reference, tmp_path, cache_dir, moment):
  workdir = str(tmp_path / 'run')
  script = os.path.join(harness.ROOT, 'tests', 'reliability', 'crash_while_saving.py')
  crashed = subprocess.run([sys.executable, script, str(CRASH_STEP), moment,
                            *harness.command(workdir)[3:]], cwd=harness.ROOT,
                           env=harness.environment(cache_dir), capture_output=True, text=True,
                           timeout=300)
  assert crashed.returncode == -9, crashed.stderr
  checkpoints = os.path.join(workdir, 'checkpoints')
  assert sorted(os.listdir(checkpoints))[0] == str(harness.CHECKPOINT_EVERY)
  assert glob.glob(os.path.join(checkpoints, f'{CRASH_STEP}.orbax-checkpoint-tmp*')), \
      'the crash should have left a partial checkpoint'

  result = harness.run(workdir, cache_dir=cache_dir)

  assert result.returncode == 0, result.stderr
  assert not glob.glob(os.path.join(checkpoints, '*tmp*')), 'the partial checkpoint is gone'
  harness.assert_bitwise_equal(harness.newest_state(workdir)[1], harness.newest_state(reference)[1])
  assert harness.records_without_timings(workdir) == harness.records_without_timings(reference)


def flip_a_byte(path: str) -> None:
  with open(path, 'r+b') as f:
    f.seek(os.path.getsize(path) // 2)
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0xFF]))


def truncate(path: str) -> None:
  os.truncate(path, os.path.getsize(path) // 2)


def array_files(step_dir: str) -> list[str]:
  """The files holding a checkpoint's arrays (OCDBT data files)."""
  return [p for p in glob.glob(os.path.join(step_dir, 'state', '**', 'd', '*'), recursive=True)
          if os.path.isfile(p)]


DAMAGE = {
    'flipped_byte': lambda step_dir: [flip_a_byte(p) for p in array_files(step_dir)],
    'truncated': lambda step_dir: [truncate(p) for p in array_files(step_dir)],
    'garbled_meta': lambda step_dir: open(os.path.join(step_dir, 'meta', 'metadata'), 'w').write('{"mo'),
}


@pytest.mark.parametrize('damage', sorted(DAMAGE))
def test_a_corrupt_latest_checkpoint_falls_back_to_the_previous_one(
    reference, reference_copy, cache_dir, damage):
  workdir = reference_copy
  last, previous = harness.STEPS, harness.STEPS - harness.CHECKPOINT_EVERY
  DAMAGE[damage](os.path.join(workdir, 'checkpoints', str(last)))

  result = harness.run(workdir, cache_dir=cache_dir)

  assert result.returncode == 0, result.stderr
  assert f'warning: the checkpoint at step {last}' in result.stderr
  assert f'using step {previous} instead' in result.stderr
  assert f'step {previous + 1}/{harness.STEPS}' in result.stdout, 'it retrained the lost steps'
  assert os.path.isdir(os.path.join(workdir, 'corrupt_checkpoints', str(last)))
  harness.assert_bitwise_equal(harness.newest_state(workdir)[1], harness.newest_state(reference)[1])
  harness.assert_metrics_whole_and_unique(workdir)


def test_a_workdir_whose_checkpoints_are_all_corrupt_is_refused_untouched(reference_copy, cache_dir):
  checkpoints = os.path.join(reference_copy, 'checkpoints')
  for step in os.listdir(checkpoints):
    DAMAGE['truncated'](os.path.join(checkpoints, step))
  before = harness.tree_digest(reference_copy)

  result = harness.run(reference_copy, cache_dir=cache_dir)

  assert result.returncode == 1
  assert result.stderr.startswith(f'error: no checkpoint in {reference_copy} can be read')
  assert len(result.stderr.strip().splitlines()) == 1, result.stderr
  assert harness.tree_digest(reference_copy) == before

"""An unusable workdir is refused before training, with nothing written; a workdir in use by a
live run is refused; a lock left by a dead run is cleared."""
import os
import signal

import pytest

from tests.reliability import harness
from tests.reliability.harness import assert_one_sentence

pytestmark = pytest.mark.slow  # Every test here starts processes.


def test_a_file_as_workdir_is_refused(tmp_path, cache_dir):
  path = tmp_path / 'not_a_dir'
  path.write_text('keep me')
  assert_one_sentence(harness.run(str(path), cache_dir=cache_dir), 'exists and is not a directory')
  assert path.read_text() == 'keep me'
  assert os.listdir(tmp_path) == ['not_a_dir']


def test_a_workdir_below_a_file_is_refused(tmp_path, cache_dir):
  (tmp_path / 'file').write_text('keep me')
  result = harness.run(str(tmp_path / 'file' / 'run'), cache_dir=cache_dir)
  assert_one_sentence(result, f'cannot be created: {tmp_path / "file"} is a file')
  assert os.listdir(tmp_path) == ['file']


def test_an_unwritable_workdir_is_refused_before_training(tmp_path, cache_dir):
  # /proc takes no new files even from root, who may write into any mode-0555 directory.
  result = harness.run('/proc/convjax-run', cache_dir=cache_dir)
  assert_one_sentence(result, 'workdir /proc/convjax-run is not writable')
  if os.geteuid() == 0:
    return
  locked = tmp_path / 'read_only'
  locked.mkdir()
  locked.chmod(0o555)
  try:
    assert_one_sentence(harness.run(str(locked / 'run'), cache_dir=cache_dir), 'is not writable')
    assert os.listdir(locked) == []
  finally:
    locked.chmod(0o755)


def test_a_second_run_on_a_busy_workdir_is_refused(tmp_path, cache_dir):
  workdir, endless = str(tmp_path / 'run'), '--config.num_train_steps=1000000'
  first = harness.start(workdir, endless, cache_dir=cache_dir)
  try:
    harness.wait_for_step(first, workdir, 2)
    second = harness.run(workdir, endless, cache_dir=cache_dir)
    assert_one_sentence(second, f'workdir {workdir} is in use by process {first.pid} on ')
    assert first.poll() is None, 'the refusal must not disturb the running owner'
    first.send_signal(signal.SIGTERM)
    status, _, err = harness.finish(first)
    assert status == 128 + signal.SIGTERM, err
  finally:
    if first.poll() is None:
      harness.kill(first)
  assert not os.path.exists(os.path.join(workdir, 'lock'))


def test_a_stale_lock_of_a_dead_process_is_cleared(tmp_path, cache_dir):
  workdir = str(tmp_path / 'run')
  owner = harness.start(workdir, cache_dir=cache_dir)
  harness.wait_for_step(owner, workdir, 2)
  harness.kill(owner)
  with open(os.path.join(workdir, 'lock')) as f:
    assert f'"pid": {owner.pid}' in f.read()

  result = harness.run(workdir, '--config.num_train_steps=45', cache_dir=cache_dir)

  assert result.returncode == 0, result.stderr
  assert f'warning: cleared a stale lock of process {owner.pid} on ' in result.stderr
  assert not os.path.exists(os.path.join(workdir, 'lock'))

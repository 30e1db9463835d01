"""The pieces the fault tests rely on, checked in-process and fast."""
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from convjax.training import checkpoint, workdir as workdir_lib


def test_digest_ignores_containers_and_leaf_order_but_not_a_single_bit():
  state = {'params': {'w': np.arange(6, dtype=np.float32).reshape(2, 3), 'b': np.zeros(3, np.float32)},
           'step': np.int32(7)}
  as_saved = (state['step'], [state['params']['b'], state['params']['w']])
  assert checkpoint.digest(state) == checkpoint.digest(as_saved)
  assert checkpoint.digest({**state, 'step': 7}) == checkpoint.digest(state)  # A restored int.
  flipped = state['params']['w'].copy()
  flipped.view(np.uint32)[1, 2] ^= 1
  assert checkpoint.digest({**state, 'params': {**state['params'], 'w': flipped}}) != \
      checkpoint.digest(state)
  assert checkpoint.digest({**state, 'params': {**state['params'], 'w': jnp.asarray(flipped)}}) == \
      checkpoint.digest({**state, 'params': {**state['params'], 'w': flipped}})


def test_a_held_lock_refuses_a_second_owner_and_is_gone_after_release(tmp_path):
  workdir = str(tmp_path / 'run')
  with workdir_lib.lock(workdir):
    with open(os.path.join(workdir, 'lock')) as f:
      assert json.load(f)['pid'] == os.getpid()
    # flock is per open file, so a second open in this very process is a second owner.
    with pytest.raises(workdir_lib.WorkdirError, match=f'in use by process {os.getpid()} on '):
      with workdir_lib.lock(workdir):
        pass
  assert os.listdir(workdir) == []
  with workdir_lib.lock(workdir):
    pass


def test_a_stale_lock_is_reported_and_taken_over(tmp_path, capsys):
  (tmp_path / 'lock').write_text(json.dumps({'pid': 999999, 'host': 'h', 'started': 't'}))
  with workdir_lib.lock(str(tmp_path)):
    with open(tmp_path / 'lock') as f:
      assert json.load(f)['pid'] == os.getpid()
  assert 'cleared a stale lock of process 999999 on h (started t)' in capsys.readouterr().err


def test_check_usable_creates_nothing(tmp_path):
  workdir_lib.check_usable(str(tmp_path / 'a' / 'b'))
  (tmp_path / 'f').write_text('x')
  with pytest.raises(workdir_lib.WorkdirError, match='is a file'):
    workdir_lib.check_usable(str(tmp_path / 'f' / 'run'))
  assert sorted(os.listdir(tmp_path)) == ['f']


def test_start_over_moves_only_the_run_files(tmp_path):
  assert workdir_lib.start_over(str(tmp_path)) is None
  for name in ('metrics.jsonl', 'config.json', 'notes.txt'):
    (tmp_path / name).write_text(name)
  (tmp_path / 'checkpoints' / '5').mkdir(parents=True)
  moved = workdir_lib.start_over(str(tmp_path))
  assert sorted(os.listdir(moved)) == ['checkpoints', 'config.json', 'metrics.jsonl']
  assert sorted(os.listdir(tmp_path)) == ['notes.txt', 'previous_runs']
  assert open(os.path.join(moved, 'metrics.jsonl')).read() == 'metrics.jsonl'

"""A SIGTERM to one process of a two-process run stops both at the same step, checkpointed, and
the pair resumes from it."""
import os
import signal

import pytest

from convjax.training import metrics
from tests.reliability import harness
from tests.test_distributed import free_port, launch

pytestmark = pytest.mark.slow  # Every test here starts processes.

ENDLESS = '--config.num_train_steps=100000'


def launch_pair(workdir, *overrides):
  address = f'127.0.0.1:{free_port()}'
  return [launch(workdir, {'JAX_COORDINATOR_ADDRESS': address, 'JAX_NUM_PROCESSES': '2',
                           'JAX_PROCESS_ID': str(i)}, overrides) for i in range(2)]


def test_sigterm_to_one_process_stops_every_process_at_one_checkpointed_step(tmp_path):
  workdir = str(tmp_path / 'run')
  pair = launch_pair(workdir, ENDLESS)
  try:
    harness.wait_for_step(pair[0], workdir, 5)
    pair[1].send_signal(signal.SIGTERM)
    outputs = [p.communicate(timeout=120)[0] for p in pair]
  finally:
    for p in pair:
      if p.poll() is None:
        p.kill()
  assert [p.returncode for p in pair] == [128 + signal.SIGTERM] * 2, outputs
  stopped = int(outputs[0].split('stopped by SIGTERM at step ')[1].split(':')[0])
  assert sorted(map(int, os.listdir(os.path.join(workdir, 'checkpoints'))))[-1] == stopped
  assert harness.latest_train_step(workdir) == stopped

  resumed = launch_pair(workdir, f'--config.num_train_steps={stopped + 2}')
  outputs = [p.communicate(timeout=240)[0] for p in resumed]
  assert [p.returncode for p in resumed] == [0, 0], outputs
  starts = [r['step'] for r in metrics.read_metrics(workdir) if r.get('event') == 'start']
  assert starts[-1] == stopped
  assert harness.latest_train_step(workdir) == stopped + 2

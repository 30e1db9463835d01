"""Two processes joined by jax.distributed (gloo on loopback) train exactly like one process."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from convjax.training import metrics

pytestmark = pytest.mark.slow  # Every test here starts processes.

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = ['-m', 'experiments.train', '--config=configs/default.py', '--config.dataset=digits',
        '--config.image_size=28', '--config.num_train_steps=6', '--config.batch_size=64',
        '--config.eval_batch_size=100', '--config.log_every_steps=1',
        # On-device augmentation draws by position in the global batch, not by process.
        '--config.augment.crop_padding=2', '--config.augment.cutout=4']


def free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def start(args, env):
  """python args in a process, on one CPU device unless env says otherwise (convjax would split
  into cores), without this process's XLA and JAX settings."""
  base = {k: v for k, v in os.environ.items() if not k.startswith(('XLA_FLAGS', 'JAX_'))}
  return subprocess.Popen([sys.executable, *args], cwd=ROOT,
                          env={**base, 'JAX_PLATFORMS': 'cpu', 'CONVJAX_CPU_DEVICES': '1', **env},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def launch(workdir, env, overrides=()):
  return start([*ARGS, *overrides, f'--workdir={workdir}'], env)


def finish(process):
  output, _ = process.communicate(timeout=240)
  assert process.returncode == 0, output
  return output


def train_losses(workdir):
  return [r['train_loss'] for r in metrics.read_metrics(workdir) if 'train_loss' in r]


def test_two_processes_match_one_process_with_two_devices(tmp_path):
  single = str(tmp_path / 'one_process')
  finish(launch(single, {'XLA_FLAGS': '--xla_force_host_platform_device_count=2'}))
  address = f'127.0.0.1:{free_port()}'
  multi = str(tmp_path / 'two_processes')
  workers = [launch(multi, {'JAX_COORDINATOR_ADDRESS': address, 'JAX_NUM_PROCESSES': '2',
                            'JAX_PROCESS_ID': str(i)}) for i in range(2)]
  for worker in workers:
    finish(worker)

  header = metrics.read_metrics(multi)[0]
  assert (header['num_processes'], header['num_devices'], header['per_device_batch_size']) == (2, 2, 32)
  np.testing.assert_allclose(train_losses(multi), train_losses(single), rtol=1e-5)
  assert len(train_losses(multi)) == 6  # Written once, by process 0.
  final = [r for r in metrics.read_metrics(multi) if 'num_test_examples' in r][-1]
  assert final['num_test_examples'] == 359
  assert os.listdir(os.path.join(multi, 'checkpoints')) == ['6']


def run_detector(workdir, env):
  """tests/detection_worker.py in a process: its printed {'axis', 'metrics'}."""
  return start([os.path.join(ROOT, 'tests', 'detection_worker.py'), workdir], env)


def printed(process):
  return json.loads(finish(process).strip().splitlines()[-1])


def test_a_detector_in_two_processes_scores_every_test_scene_in_each(tmp_path):
  # COCO's AP needs every device's detections in one place; device_get alone would give each
  # process its own devices' scenes (4 and 2 of the 6) and a different AP in each.
  single = printed(run_detector(str(tmp_path / 'one_process'),
                                {'XLA_FLAGS': '--xla_force_host_platform_device_count=2'}))
  address = f'127.0.0.1:{free_port()}'
  workers = [run_detector(str(tmp_path / 'two_processes'),
                          {'JAX_COORDINATOR_ADDRESS': address, 'JAX_NUM_PROCESSES': '2',
                           'JAX_PROCESS_ID': str(i)}) for i in range(2)]
  both = [printed(worker) for worker in workers]
  for result in [single] + both:
    assert result['axis'] == [0, 1]  # Both devices, in the data-parallel axis's order.
    assert result['metrics']['num_test_examples'] == 6
  for result in both:
    for key in ('test_AP', 'test_AP50', 'tta_test_AP', 'ema_test_AP'):
      np.testing.assert_allclose(result['metrics'][key], single['metrics'][key], atol=1e-6)

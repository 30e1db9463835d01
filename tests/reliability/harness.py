"""Real training processes for the reliability suite: start, watch, signal, kill, inspect.

Every run is `python -m experiments.train` as a user types it, on scikit-learn's digits
(upsampled to LeNet-5's 28x28) with 2 CPU devices, logging every step so a test can stop a run
at a chosen step. The runs share a JAX compilation cache, which only saves compile time: the
cached executables are the ones a fresh compile would make.
"""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np

from convjax.training import checkpoint, metrics

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUM_DEVICES = 2
STEPS = 160
CHECKPOINT_EVERY = 40
BASE = ['--config=configs/default.py', '--config.dataset=digits', '--config.image_size=28',
        '--config.batch_size=64', '--config.eval_batch_size=120', '--config.model=lenet5',
        f'--config.num_train_steps={STEPS}', '--config.log_every_steps=1',
        '--config.eval_every_steps=50', f'--config.checkpoint_every_steps={CHECKPOINT_EVERY}',
        # Dropout-free LeNet-5 plus augmentation: the data order and the random crops both
        # have to be replayed exactly for a resumed run to match.
        '--config.augment.crop_padding=2']
# Fields of metrics.jsonl that measure time, and so differ between identical runs.
TIMING_KEYS = ('images_per_sec', 'train_seconds', 'eval_images_per_sec', 'wall_seconds')


def environment(cache_dir: str | None = None) -> dict:
  env = {k: v for k, v in os.environ.items() if not k.startswith(('XLA_FLAGS', 'JAX_'))}
  env.update(JAX_PLATFORMS='cpu', CONVJAX_CPU_DEVICES=str(NUM_DEVICES), PYTHONUNBUFFERED='1')
  if cache_dir:
    env.update(JAX_COMPILATION_CACHE_DIR=cache_dir, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')
  return env


def command(workdir: str, *overrides: str) -> list[str]:
  return [sys.executable, '-m', 'experiments.train', f'--workdir={workdir}', *BASE, *overrides]


def start(workdir: str, *overrides: str, cache_dir: str | None = None) -> subprocess.Popen:
  return subprocess.Popen(command(workdir, *overrides), cwd=ROOT, env=environment(cache_dir),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run(workdir: str, *overrides: str, cache_dir: str | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess:
  return subprocess.run(command(workdir, *overrides), cwd=ROOT, env=environment(cache_dir),
                        capture_output=True, text=True, timeout=timeout)


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
  out, err = process.communicate(timeout=timeout)
  return process.returncode, out, err


def latest_train_step(workdir: str) -> int:
  steps = [r['step'] for r in metrics.read_metrics(workdir) if 'train_loss' in r]
  return steps[-1] if steps else 0


def wait_for_step(process: subprocess.Popen, workdir: str, step: int, timeout: float = 240) -> int:
  """Polls metrics.jsonl until the run has logged `step` or later; returns the step seen."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    seen = latest_train_step(workdir)
    if seen >= step:
      return seen
    if process.poll() is not None:
      raise AssertionError(f'the run ended before step {step}: {process.communicate()}')
    time.sleep(0.01)
  raise AssertionError(f'no step {step} within {timeout} s')


def interrupt_at(workdir: str, step: int, signum: int, cache_dir: str) -> tuple[int, str, str]:
  """Starts a run, sends `signum` once it has logged `step`, and waits for it to end."""
  process = start(workdir, cache_dir=cache_dir)
  try:
    wait_for_step(process, workdir, step)
    process.send_signal(signum)
    return finish(process)
  finally:
    if process.poll() is None:
      process.kill()


def newest_state(workdir: str) -> tuple[int, dict]:
  """(step, state as plain host arrays) of the workdir's newest checkpoint, verified."""
  saved = checkpoint.Checkpointer(workdir, max_to_keep=None, create=False)
  try:
    step = saved.latest_step()
    return step, saved.restore(step)
  finally:
    saved.close()


def assert_bitwise_equal(a, b) -> None:
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    x, y = np.asarray(x), np.asarray(y)
    assert x.dtype == y.dtype and x.shape == y.shape
    assert x.tobytes() == y.tobytes(), 'parameters differ'


def metric_lines(workdir: str) -> list[str]:
  with open(os.path.join(workdir, metrics.METRICS_FILE)) as f:
    return f.read().split('\n')


def records_without_timings(workdir: str) -> list[dict]:
  """metrics.jsonl's training and evaluation records with the timing fields removed; the
  'start' events, which a resumed run writes once per start, are left out."""
  return [{k: v for k, v in r.items() if k not in TIMING_KEYS}
          for r in metrics.read_metrics(workdir) if r.get('event') != 'start']


def assert_metrics_whole_and_unique(workdir: str) -> None:
  """Every line of metrics.jsonl is complete JSON, and no step is logged twice."""
  lines = metric_lines(workdir)
  assert lines[-1] == '', 'the last line is unterminated'
  records = [json.loads(line) for line in lines[:-1]]
  for kind in ('train_loss', 'test_accuracy'):
    steps = [r['step'] for r in records if kind in r]
    assert steps == sorted(set(steps)), f'a step was logged twice: {steps}'


def assert_one_sentence(result: subprocess.CompletedProcess, message: str) -> None:
  """The command failed with exit status 1 and one line on stderr: 'error: ...message...'."""
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [result.stderr.strip()], result.stderr
  assert result.stderr.startswith('error: ') and message in result.stderr, result.stderr
  assert 'Traceback' not in result.stderr


def tree_digest(directory: str) -> dict[str, bytes]:
  """Every file under `directory` and its contents, to show that nothing changed."""
  contents = {}
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      with open(path, 'rb') as f:
        contents[os.path.relpath(path, directory)] = f.read()
  return contents


def kill(process: subprocess.Popen) -> None:
  process.send_signal(signal.SIGKILL)
  process.wait()

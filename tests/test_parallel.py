"""The launch window: multi-device programs never run so far ahead that XLA:CPU deadlocks."""
import logging
import os
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convjax import parallel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# 2 devices, each launch an all-reduce, 200 launches issued without waiting: the host runs far
# ahead of the devices, as it does when another process slows them. The rendezvous timeout is
# cut to 1 s (abort after ~21 s: XLA warns at 20 s first) so the unprotected case fails fast.
_FLOOD = textwrap.dedent('''
    import os, sys
    os.environ['XLA_FLAGS'] = ('--xla_force_host_platform_device_count=2 '
                               '--xla_cpu_collective_call_terminate_timeout_seconds=1')
    import jax, jax.numpy as jnp, numpy as np
    from convjax import parallel

    def step(x):
      return jax.lax.pmean(jnp.tanh(x @ x.T) @ x / jnp.tanh(1.0), parallel.AXIS)

    dp = parallel.DataParallel()
    if sys.argv[1] == 'raw':  # A copy of the identity on each device.
      step = jax.pmap(step, axis_name=parallel.AXIS, donate_argnums=0)
      x = dp.shard(jnp.tile(jnp.eye(128), (2, 1)))
    else:
      step = dp.pmap(step, in_axes=None, out_axes=None, donate_first_arg=True)
      x = dp.replicate(jnp.eye(128))
    for _ in range(200):
      x = step(x)
    print('finished', float(np.asarray(x).flat[0]), len(parallel._LAUNCHES), flush=True)
''')


def _flood(mode: str) -> subprocess.CompletedProcess:
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  return subprocess.run([sys.executable, '-c', _FLOOD, mode], cwd=ROOT, env=env, text=True,
                        capture_output=True, timeout=180)


@pytest.mark.slow
def test_launches_far_ahead_finish_through_the_window():
  result = _flood('convjax')
  assert result.returncode == 0, result.stderr[-2000:]
  _, value, in_flight = result.stdout.split()
  assert float(value) == 1.0  # The identity is a fixed point: every launch ran.
  assert int(in_flight) <= parallel.MAX_LAUNCHES_IN_FLIGHT


@pytest.mark.slow
def test_the_same_launches_without_the_window_abort():
  """The conditions above really deadlock XLA:CPU (if this starts passing, a jaxlib has fixed
  the client and the window may go). The deadlock needs the host to get far enough ahead, which
  depends on the machine's timing: on the AMD EPYC most runs abort, on an Intel Xeon eight in a
  row have finished. Up to eight tries; a machine where none aborts skips, saying so, and an
  abort must be the deadlock's."""
  for _ in range(8):
    result = _flood('raw')
    if result.returncode == -signal.SIGABRT:
      break
    assert result.returncode == 0, result.stderr[-2000:]
  else:
    pytest.skip('the unbounded launches did not deadlock XLA:CPU in 8 tries on this machine')
  assert 'Termination timeout' in result.stderr and 'all reduce' in result.stderr


def test_window_waits_for_the_oldest_launch_when_full():
  window = parallel.LaunchWindow(limit=3)
  add = jax.jit(lambda x: x + 1)
  tokens = [add(jnp.int8(i)) for i in range(3)]
  for token in tokens:
    window.add(token)
  window.admit()
  assert len(window) < 3 and tokens[0].is_ready()


class _FailedLaunch:
  """A token whose program failed, as XLA reports it: ready, and raising when waited on."""

  def is_ready(self):
    return True

  def block_until_ready(self):
    raise RuntimeError('INTERNAL: onednn_conv: could not create a primitive descriptor')


def test_a_failed_launch_raises_once_and_not_into_the_next_run():
  window = parallel.LaunchWindow(limit=3)
  for _ in range(3):  # A run's steps queued behind its first failure.
    window.add(_FailedLaunch())
  with pytest.raises(RuntimeError, match='primitive descriptor'):
    window.admit()
  assert len(window) == 0
  window.admit()  # The next run starts clean.


def test_pmapped_function_keeps_its_outputs_and_lowering(caplog):
  dp = parallel.DataParallel(2)
  double = dp.pmap(lambda x: 2 * x, in_axes=parallel.REPLICATED)
  x = dp.replicate(np.arange(3.0))
  np.testing.assert_array_equal(double(x), [[0, 2, 4]] * 2)
  # Memory analysis after a call reuses the call's compilation; another function compiles.
  with jax.log_compiles(True), caplog.at_level(logging.WARNING):
    assert double.lower(x).compile().memory_analysis() is not None
    assert 'Compiling' not in caplog.text
    dp.pmap(lambda x: 3 * x, in_axes=parallel.REPLICATED).lower(x).compile()
    assert 'Compiling' in caplog.text


def test_the_first_argument_is_donated_from_donate_min_bytes():
  dp = parallel.DataParallel(2)
  add_one = lambda: dp.pmap(lambda x: x + 1, in_axes=parallel.REPLICATED,
                            out_axes=parallel.REPLICATED, donate_first_arg=True)
  small = dp.replicate(np.zeros(16, np.float32))
  large = dp.replicate(np.zeros(parallel.DONATE_MIN_BYTES // 4, np.float32))
  assert parallel.tree_bytes({'a': large, 'b': 3}) == parallel.DONATE_MIN_BYTES
  outputs = add_one()(small), add_one()(large)
  assert not small.is_deleted() and large.is_deleted()
  for output in outputs:
    assert np.all(dp.unreplicate(output) == 1)


def test_unreplicate_copies_device_zeros_shard_without_launching_programs(monkeypatch):
  dp = parallel.DataParallel(2)
  tree = dp.replicate({'w': np.arange(6.0).reshape(2, 3), 'step': np.int32(7)})

  def launches(self, index):
    raise AssertionError('indexing a replicated array launches a program on every device')
  monkeypatch.setattr(type(tree['w']), '__getitem__', launches)
  host = dp.unreplicate(tree)
  np.testing.assert_array_equal(host['w'], np.arange(6.0).reshape(2, 3))
  assert host['step'] == 7 and isinstance(host['w'], np.ndarray)


@pytest.mark.parametrize('batch_size,count', [(128, None), (66, 3), (6, 3), (10, 2), (7, 1),
                                              (0, None)])
def test_the_most_devices_that_split_a_batch(batch_size, count):
  assert parallel.local_device_count() == 4
  assert parallel.most_devices_dividing(batch_size) == count


def _cpu_devices(args: str = '', before: str = '', **env) -> list[str]:
  """In a fresh process: `before`, then parallel.use_cpu_cores(ARGS); returns the device count
  and the description of how it was chosen."""
  environ = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'CONVJAX_CPU_DEVICES')}
  code = (f'import jax\nfrom convjax import parallel\n{before}\n'
          f'source = parallel.use_cpu_cores({args})\n'
          'print(jax.local_device_count(), source, sep="|")\n')
  result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env={**environ, **env},
                          capture_output=True, text=True, timeout=120, check=True)
  return result.stdout.strip().split('|')


@pytest.mark.slow
def test_use_cpu_cores_splits_the_cpu_into_one_device_per_core_unless_told_otherwise():
  cores = len(os.sched_getaffinity(0))
  assert _cpu_devices() == [str(cores), f'one device per core of {cores}; '
                                        'CONVJAX_CPU_DEVICES=N changes it']
  assert _cpu_devices('3') == ['3', '3 requested']
  assert _cpu_devices(CONVJAX_CPU_DEVICES='1') == ['1', 'CONVJAX_CPU_DEVICES=1']
  # An explicit XLA flag wins over both.
  assert _cpu_devices('3', XLA_FLAGS='--xla_force_host_platform_device_count=5',
                      CONVJAX_CPU_DEVICES='2') == ['5', 'XLA_FLAGS sets '
                                                   '--xla_force_host_platform_device_count']
  # Once JAX has computed something the count is fixed, and the description says so.
  started = _cpu_devices('2', before='parallel.use_cpu_cores(3); jax.numpy.zeros(1).block_until_ready()')
  assert started == ['3', 'JAX had started before parallel.use_cpu_cores, so XLA chose the count']

"""convjax: convolutional networks in JAX/Flax, as pure functions trained data-parallel."""
import os
import sys


def _split_host_into_cores() -> None:
  """Makes XLA:CPU present one device per core, unless the user chose a count already.

  Data parallelism over the cores of one CPU runs each device's share of the batch on its own
  thread; for ResNet-20 that trains 1.3x faster than one device using both cores (PERFORMANCE.md).
  Configs pick fewer with `num_devices` (LeNet-5's small step is fastest on one device).
  CONVJAX_CPU_DEVICES=N asks for N devices instead; N=1 keeps XLA's single CPU device. This has to
  run before JAX starts, so it does nothing once jax has been imported.
  """
  global CPU_DEVICES_SOURCE
  flag = '--xla_force_host_platform_device_count'
  flags = os.environ.get('XLA_FLAGS', '')
  if 'jax' in sys.modules:
    CPU_DEVICES_SOURCE = 'jax was imported before convjax, so XLA chose the CPU device count'
    return
  chosen = os.environ.get('CONVJAX_CPU_DEVICES')
  count = int(chosen or len(os.sched_getaffinity(0)))
  CPU_DEVICES_SOURCE = (f'CONVJAX_CPU_DEVICES={chosen}' if chosen else
                        f'convjax: one device per core of {count}; '
                        'CONVJAX_CPU_DEVICES=N changes it')
  if flag in flags:
    # Set by the user, or by convjax in the process that restarted itself into this one.
    if os.environ.get(_SPLIT_MARKER) != flags:
      CPU_DEVICES_SOURCE = f'XLA_FLAGS sets {flag}'
    return
  if count > 1:
    os.environ['XLA_FLAGS'] = os.environ[_SPLIT_MARKER] = f'{flags} {flag}={count}'.strip()


# How the CPU device count was chosen, for the one line runs log about it (parallel.describe).
CPU_DEVICES_SOURCE = ''
# The XLA_FLAGS value convjax set, so that a restarted process (experiments.cli) knows it.
_SPLIT_MARKER = 'CONVJAX_SPLIT_XLA_FLAGS'
_split_host_into_cores()

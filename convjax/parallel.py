"""Everything that knows about devices: the pmap axis, replication, sharding, collectives.

Models and the training loop never mention devices. Per-device functions call `mean`, `sum` and
`device_index` from here, and `pmap` turns them into data-parallel programs over every local
device. Swapping this module's pmap for jit + shard_map changes nothing elsewhere.

Arrays live on the devices in one of two ways. SHARDED arrays (`shard`: batches, and per-device
outputs) carry a leading [devices] axis, one slice per device. REPLICATED arrays (`replicate`:
the train state, datasets held on the devices) are whole on every device, with no device axis,
and a pmapped function takes them whole (in_axes None). The train state is whole so that a
donated one (from DONATE_MIN_BYTES) is updated in place: a device slice of a stacked state reaches
the update through a reshape that makes XLA:CPU copy every parameter and momentum trace twice a
step (a quarter of AlexNet's step; PERFORMANCE.md).
"""
import collections
import itertools
import os
import threading
from typing import Any, Callable, Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import multihost_utils

from convjax import errors

AXIS = 'batch'  # The named axis that gradients and metrics are averaged over.
# pmap's in_axes and out_axes for the two ways an array lives on the devices (module docstring).
REPLICATED, SHARDED = None, 0
# A step's arguments: (the train state, whole on every device; a batch split over them).
STATE_AND_BATCH = (REPLICATED, SHARDED)

# A donated train state is updated in place, which spares a large state's copy and its memory:
# AlexNet's step (b16, 224) went from 414-422 to 322-338 ms and its peak memory from 1,975 to
# 1,565 MiB. A small state has nothing to spare, and its in-place updates cost XLA:CPU's
# schedule time: LeNet-5 (b256) took 11.8-12.5 ms a step donated against 11.0-11.2 not,
# ResNet-20 (b128) 195-201 ms against 191-192. So `pmap` donates a state of at least this size
# only. The size is a measured dividing line between those models, not a modelled cost.
DONATE_MIN_BYTES = 16 * 2 ** 20

# At most this many multi-device launches run ahead of the host. XLA:CPU's client gives each
# device 32 permits for computations in flight and takes one, blocking, on a thread of a pool
# sized for one collective at a time. At 32 launches ahead that thread blocks while the pool's
# other thread runs one device's half of an all-reduce that waits for the other half, which is
# queued behind it: a deadlock that XLA aborts after its 40 s rendezvous timeout. Waiting here,
# on the host, before the permits run out makes that impossible (`LaunchWindow`). Sixteen keeps
# the devices fed and leaves half the permits to single-device programs.
MAX_LAUNCHES_IN_FLIGHT = 16


class LaunchWindow:
  """Bounds how many launches may be unfinished: `admit` waits for the oldest when full.

  Each launch is represented by a token, a scalar output of the launched program that becomes
  ready when the whole program has run, so it can be waited on even after the program's real
  outputs have been donated to a later launch.
  """

  def __init__(self, limit: int):
    self.limit = limit
    self._tokens = collections.deque()
    self._lock = threading.Lock()

  def admit(self) -> None:
    """Blocks until fewer than `limit` launches are unfinished.

    A launch that failed raises its error here once, and the window forgets every launch before
    the next call: the programs queued behind a failed one (its training run's later steps) must
    not raise the same error again into whatever runs next in this process.
    """
    with self._lock:
      try:
        while self._tokens and (len(self._tokens) >= self.limit or self._tokens[0].is_ready()):
          self._tokens.popleft().block_until_ready()
      except Exception:
        self._tokens.clear()
        raise

  def add(self, token: jax.Array) -> None:
    with self._lock:
      self._tokens.append(token)

  def __len__(self) -> int:
    return len(self._tokens)


# One window per process: the permits belong to the devices, whichever DataParallel launches.
_LAUNCHES = LaunchWindow(MAX_LAUNCHES_IN_FLIGHT)


_DEVICE_COUNT_FLAG = '--xla_force_host_platform_device_count'
# How the CPU device count was chosen, for the line a run logs about its devices (`describe`);
# None until use_cpu_cores is called.
_cpu_devices_source = None


def use_cpu_cores(count: int | None = None) -> str:
  """Makes XLA:CPU present `count` devices, so that data parallelism over them runs each device's
  share of the batch on its own core; returns how the count was chosen, in words.

  Call it before JAX computes anything: the experiment scripts do, and a library user who wants
  one device per core calls it after `import jax`. The count is `count`, else CONVJAX_CPU_DEVICES,
  else one per core this process may run on. --xla_force_host_platform_device_count in XLA_FLAGS
  wins over all three. Configs may still train on fewer devices (`num_devices`). Once JAX has
  started its backends the count is fixed, and this changes nothing.
  """
  global _cpu_devices_source
  chosen = os.environ.get('CONVJAX_CPU_DEVICES')
  if _xla_flags_source():
    _cpu_devices_source = _xla_flags_source()
  elif count is not None or chosen:
    _cpu_devices_source = (f'{count} requested' if count is not None
                           else f'CONVJAX_CPU_DEVICES={chosen}')
    _set_cpu_device_count(int(count or chosen))
  else:
    cores = len(os.sched_getaffinity(0))
    _cpu_devices_source = f'one device per core of {cores}; CONVJAX_CPU_DEVICES=N changes it'
    _set_cpu_device_count(cores)
  return _cpu_devices_source


def _xla_flags_source() -> str:
  """Returns 'XLA_FLAGS sets --xla_force_host_platform_device_count' when it does, else ''."""
  return (f'XLA_FLAGS sets {_DEVICE_COUNT_FLAG}'
          if _DEVICE_COUNT_FLAG in os.environ.get('XLA_FLAGS', '') else '')


def _set_cpu_device_count(count: int) -> None:
  """Sets jax_num_cpu_devices, unless JAX's backends have started (then the count is fixed)."""
  global _cpu_devices_source
  try:
    jax.config.update('jax_num_cpu_devices', count)
  except RuntimeError:  # Raised once the backends are initialised.
    _cpu_devices_source = 'JAX had started before parallel.use_cpu_cores, so XLA chose the count'


def maybe_initialize_distributed(enabled: bool = False) -> None:
  """Starts JAX's multi-controller runtime when the config or the environment asks for it.

  A single machine needs nothing. `enabled` (config.distributed) calls jax.distributed.initialize
  with no arguments, so JAX takes the coordinator, process count and process id from the
  cluster (SLURM, Open MPI, Kubernetes, Cloud TPU). Without a cluster manager, set
  JAX_COORDINATOR_ADDRESS (host:port of process 0), JAX_NUM_PROCESSES and JAX_PROCESS_ID in
  every process. On CPU the processes exchange collectives through gloo.
  """
  address = os.environ.get('JAX_COORDINATOR_ADDRESS')
  if not (enabled or address):
    return
  if jax.config.jax_platforms in (None, '', 'cpu'):
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  num_processes, process_id = (os.environ.get(k) for k in ('JAX_NUM_PROCESSES', 'JAX_PROCESS_ID'))
  jax.distributed.initialize(address, int(num_processes) if num_processes else None,
                             int(process_id) if process_id else None)


def process_index() -> int:
  return jax.process_index()


def process_count() -> int:
  return jax.process_count()


def device_index() -> jax.Array:
  """Inside a per-device function: this device's position on the data-parallel axis."""
  return lax.axis_index(AXIS)


def _one_device() -> bool:
  """Inside a per-device function: whether the data-parallel axis has a single device. Its
  collectives are then the identity, yet XLA:CPU still runs them as a copy of every operand,
  which for a large model's gradients is a measurable share of the step."""
  return lax.axis_size(AXIS) == 1


def mean(tree: Any) -> Any:
  """Inside a per-device function: the average of `tree` over all devices (every process)."""
  return tree if _one_device() else lax.pmean(tree, AXIS)


def sum(tree: Any) -> Any:  # pylint: disable=redefined-builtin
  """Inside a per-device function: the sum of `tree` over all devices (every process)."""
  return tree if _one_device() else lax.psum(tree, AXIS)


def gather(tree: Any) -> Any:
  """Outside: every device's part of SHARDED outputs (a pmapped function's), from every process,
  as numpy arrays [num_devices, ...] in the data-parallel axis's order. jax.device_get alone
  returns only this process's devices' parts once the run spans several processes."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  return multihost_utils.process_allgather(tree, tiled=True)


def local_device_count() -> int:
  """This process's devices, all of them (a DataParallel may use fewer)."""
  return jax.local_device_count()


def most_devices_dividing(batch_size: int) -> int | None:
  """The largest count of local devices per process over which batch_size splits evenly across
  every process; None (all of them) when none does, or every one does."""
  for count in range(local_device_count(), 0, -1):
    if batch_size > 0 and batch_size % (count * jax.process_count()) == 0:
      return None if count == local_device_count() else count
  return None


def describe(dp: 'DataParallel') -> str:
  """Returns one line on the devices a run uses and, on CPU, how their count was chosen
  (`use_cpu_cores`)."""
  line = (f'{dp.num_local_devices} {jax.default_backend()} device(s) in each of '
          f'{process_count()} process(es)' if process_count() > 1 else
          f'{dp.num_local_devices} {jax.default_backend()} device(s)')
  if jax.default_backend() == 'cpu':
    source = _cpu_devices_source or _xla_flags_source() or "XLA's default"
    line += f' of {jax.local_device_count()} ({source})'
  return line


def _first_devices_per_process(count: int) -> list[jax.Device]:
  """The first `count` devices of every process, ordered by process."""
  by_process = collections.defaultdict(list)
  for device in jax.devices():
    by_process[device.process_index].append(device)
  return [d for process in sorted(by_process) for d in by_process[process][:count]]


class DataParallel:
  """Data parallelism over `num_local_devices` devices of this process (all of them by default).

  The global batch is split over every device of every process; each process feeds its own
  devices with arrays whose leading axis is [num_local_devices] (SHARDED), and keeps the train
  state whole on each (REPLICATED).
  """

  def __init__(self, num_local_devices: int | None = None):
    available = jax.local_devices()
    if num_local_devices is not None and not 1 <= num_local_devices <= len(available):
      raise errors.InvalidValueError(f'num_devices={num_local_devices} is not between 1 and the '
                                     f'{len(available)} local devices')
    self.devices = available[:num_local_devices or len(available)]
    # pmap's axis spans every process: the same number of devices from each.
    self._pmap_devices = _first_devices_per_process(len(self.devices))
    mesh = jax.sharding.Mesh(np.array(self.devices), (AXIS,))
    self._sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(AXIS))
    self._replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    self._device_indices = self.shard(np.arange(len(self.devices), dtype=np.int32))

  @property
  def num_local_devices(self) -> int:
    return len(self.devices)

  @property
  def num_devices(self) -> int:
    """Devices over all processes: what the global batch is divided by."""
    return len(self.devices) * jax.process_count()

  def pmap(self, per_device_fn: Callable, in_axes: Any = SHARDED, out_axes: Any = SHARDED,
           donate_first_arg: bool = False) -> Callable:
    """Runs `per_device_fn` on every device. in_axes and out_axes are jax.pmap's: SHARDED (0) for
    arrays with a leading [devices] axis, REPLICATED (None) for arrays whole on every device.

    With `donate_first_arg`, the first argument's buffers (the train state) are reused for the
    output where they hold at least DONATE_MIN_BYTES at the first call, so a step holds one copy
    of the state in memory, not two. Calls go through the process's launch window
    (MAX_LAUNCHES_IN_FLIGHT). `.lower` lowers the launched program itself (with the window's int8
    token), so after a call, `.lower(...).compile()` reuses that call's compilation: memory
    figures cost no second compile.
    """
    programs = {}
    # jax.pmap takes its axis size from a SHARDED argument. A function of REPLICATED arguments
    # alone has none, so its calls pass the devices' indices (SHARDED) last, unseen by it.
    indexed = not (isinstance(in_axes, tuple) and SHARDED in in_axes)
    extra = (self._device_indices,) if indexed else ()

    def program(args: tuple) -> Callable:
      if len(args) not in programs:  # The first call decides on donation, by its state's size.
        axes = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)
        donate = donate_first_arg and tree_bytes(args[0]) >= DONATE_MIN_BYTES
        fn = (lambda *a: per_device_fn(*a[:-1])) if indexed else per_device_fn
        programs[len(args)] = jax.pmap(
            lambda *a: (fn(*a), jnp.zeros((), jnp.int8)), axis_name=AXIS,
            devices=self._pmap_devices, in_axes=axes + (SHARDED,) * indexed,
            out_axes=(out_axes, SHARDED), donate_argnums=(0,) if donate else ())
      return programs[len(args)]

    def launch(*args):
      _LAUNCHES.admit()
      outputs, token = program(args)(*args, *extra)
      _LAUNCHES.add(token)
      return outputs
    launch.lower = lambda *args: program(args).lower(*args, *extra)
    return launch

  def pmap_step(self, per_device_step: Callable) -> Callable:
    """pmap of a train step (state, batch) -> (state, metrics): the state replicated (and
    donated, from DONATE_MIN_BYTES), the batch and the metrics sharded."""
    return self.pmap(per_device_step, in_axes=STATE_AND_BATCH, out_axes=(REPLICATED, SHARDED),
                     donate_first_arg=True)

  def replicate(self, tree: Any) -> Any:
    """Puts every leaf whole on every local device: leaf [...] -> the same [...], REPLICATED.

    Each device receives the host array directly, so a whole dataset is never stacked on the host.
    """
    def put(x):
      x = np.asarray(x)
      copies = [jax.device_put(x, device) for device in self.devices]
      return jax.make_array_from_single_device_arrays(x.shape, self._replicated, copies)
    return jax.tree.map(put, tree)

  @staticmethod
  def unreplicate(tree: Any) -> Any:
    """The first device's copy of a replicated tree, fetched to host: [...] -> [...].

    A copy of device 0's shard, which runs no program: indexing a device array launches one on
    every device for every leaf, outside the launch window, and enough of those deadlock XLA:CPU
    just as unbounded steps do (see MAX_LAUNCHES_IN_FLIGHT).
    """
    def first(x):
      if isinstance(x, jax.Array):
        return np.asarray(x.addressable_shards[0].data)
      return np.asarray(x)
    return jax.tree.map(first, tree)

  def shard(self, batch: Any) -> Any:
    """Splits each leaf's leading axis over devices: [n, ...] -> [devices, n / devices, ...].

    The transfer starts asynchronously; the caller does not wait for it.
    """
    count = self.num_local_devices
    return jax.tree.map(
        lambda x: jax.device_put(x.reshape((count, -1) + x.shape[1:]), self._sharding), batch)

  def prefetch(self, batches: Iterable[Any], size: int = 2) -> Iterator[Any]:
    """Shards batches onto the devices `size` steps ahead, overlapping transfer with compute."""
    queue = collections.deque()
    iterator = iter(batches)
    for batch in itertools.islice(iterator, size):
      queue.append(self.shard(batch))
    while queue:
      yield queue.popleft()
      for batch in itertools.islice(iterator, 1):
        queue.append(self.shard(batch))


def tree_bytes(tree: Any) -> int:
  """The bytes of a tree's arrays (host or device; other leaves count 0)."""
  return int(np.sum([getattr(leaf, 'nbytes', 0) for leaf in jax.tree.leaves(tree)]))


def compiled_memory_bytes(compiled) -> int | None:
  """Returns the per-device bytes a compiled XLA program needs: arguments + outputs + temporaries - donated aliases;
  None where the backend does not report them."""
  stats = compiled.memory_analysis()
  if stats is None:
    return None
  return int(stats.argument_size_in_bytes + stats.output_size_in_bytes +
             stats.temp_size_in_bytes - stats.alias_size_in_bytes)


def preemption_sync_point(step: int) -> bool:
  """In a multi-process run: True at the step where every process should checkpoint and stop,
  once any process has received SIGTERM (JAX's preemption service agrees on the step). Call it
  after every step, in every process."""
  return multihost_utils.reached_preemption_sync_point(step)


def barrier(name: str) -> None:
  """Waits until every process has reached the barrier called `name` (no-op in one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)

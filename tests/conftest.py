"""Four fake CPU devices for every test, set before jax is imported anywhere."""
import os
import sys

NUM_TEST_DEVICES = 4
# Tests check numbers, not speed, and most of their time is XLA compiling tiny programs, most of
# that LLVM optimising them: without it the edit loop takes half as long. Processes that tests
# start inherit the flags and the cache below, unless the test gives them their own environment.
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           f' --xla_force_host_platform_device_count={NUM_TEST_DEVICES}'
                           ' --xla_backend_optimization_level=0')
# JAX's persistent compilation cache, outside the checkout: a rerun of the suite loads the
# programs that an earlier run compiled (the key covers the program, flags and versions).
# CONVJAX_TEST_CACHE='' turns it off.
_CACHE = os.environ.get('CONVJAX_TEST_CACHE',
                        os.path.join(os.path.expanduser('~'), '.cache', 'convjax', 'jax-tests'))
if _CACHE:
  os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', _CACHE)
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '-1')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gc  # pylint: disable=g-import-not-at-top,wrong-import-position

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

# Every compiled program keeps its machine code in memory mappings of its own, and JAX's caches
# keep the programs. Over the whole suite they passed Linux's limit of 65,530 mappings per
# process (vm.max_map_count), and the next program loaded crashed the run (a segmentation fault
# in JAX's cache read). Past this many, a test's end empties JAX's caches; the persistent cache
# still saves recompiling.
MAX_MAPPINGS = 40_000


def _mappings() -> int:
  try:
    with open('/proc/self/maps', 'rb') as maps:
      return sum(1 for _ in maps)
  except OSError:  # Not Linux: no such limit to keep under.
    return 0


@pytest.fixture(autouse=True)
def _bounded_memory_mappings():
  yield
  if _mappings() > MAX_MAPPINGS:
    import jax  # pylint: disable=import-outside-toplevel
    jax.clear_caches()
    gc.collect()


@pytest.fixture
def digits_config():
  """A few steps of LeNet-5 on scikit-learn's digits, upsampled to LeNet's 28x28."""
  from configs import default
  config = default.get_config()
  config.dataset = 'digits'
  config.image_size = 28
  config.batch_size = 64
  config.eval_batch_size = 100
  config.num_train_steps = 12
  config.log_every_steps = 4
  config.eval_every_steps = 6
  config.checkpoint_every_steps = 6
  return config

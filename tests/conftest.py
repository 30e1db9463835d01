"""Four fake CPU devices for every test, set before jax is imported anywhere."""
import os
import sys

NUM_TEST_DEVICES = 4
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           f' --xla_force_host_platform_device_count={NUM_TEST_DEVICES}')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position


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

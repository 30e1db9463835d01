"""Every config file loads, validates, names a registered model, and documents its command."""
import glob
import importlib
import os

import pytest

from convjax import config as config_lib, models

CONFIG_FILES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), '..', 'configs', '*.py')))
EXPERIMENTS = [f for f in CONFIG_FILES if not os.path.basename(f).startswith(('_', 'default'))]


def load(path):
  return importlib.import_module(f'configs.{os.path.basename(path)[:-3]}')


@pytest.mark.parametrize('path', EXPERIMENTS, ids=os.path.basename)
def test_config_validates_and_its_docstring_holds_the_command(path):
  module = load(path)
  config = module.get_config()
  config_lib.validate(config, num_devices=1)
  assert config.model in models.list_models()
  assert f'--config=configs/{os.path.basename(path)}' in module.__doc__


def test_every_classic_pairing_has_a_config():
  names = {os.path.basename(p) for p in EXPERIMENTS}
  assert {'lenet5_fashion_mnist.py', 'lenet5_1998_fashion_mnist.py', 'resnet20_cifar10.py',
          'alexnet_2012_fashion_mnist.py', 'vgg11_bn_fashion_mnist.py'} <= names

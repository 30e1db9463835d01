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


def default_config(**fields):
  from configs import default
  config = default.get_config()
  for name, value in fields.items():
    target = config
    *parents, leaf = name.split('__')
    for parent in parents:
      target = target[parent]
    target[leaf] = value
  return config


@pytest.mark.parametrize('fields,message', [
    ({'dataset': 'mnist', 'augment__flip': True}, "augment.flip would change classes of 'mnist'"),
    ({'dataset': 'imagenette', 'augment__crop_padding': 4}, "augment.crop_padding applies to in-memory"),
    ({'augment__cutout': -1}, 'augment.cutout must be >= 0'),
    ({'dataset': 'imagenet2012', 'augment__min_crop_scale': 0.0}, r'augment.min_crop_scale must be in \(0, 1\]'),
    ({'eval_crop_ratio': 1.5}, r'eval_crop_ratio must be in \(0, 1\]'),
    ({'input_workers': 0}, 'input_workers must be at least 1'),
    ({'dataset': 'cifar100', 'num_classes': 10}, "does not match dataset 'cifar100', which has 100"),
])
def test_bad_data_settings_are_refused_with_the_field(fields, message):
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(default_config(**fields), num_devices=1)


def test_flip_is_accepted_where_it_keeps_the_class():
  for dataset in ('fashion_mnist', 'cifar10', 'imagenet2012'):
    config_lib.validate(default_config(dataset=dataset, augment__flip=True), num_devices=1)

"""Every config file loads, validates, names a registered model, and documents its command."""
import glob
import importlib
import os
import re

import jax
import jax.numpy as jnp
import pytest

from convjax import models
from convjax.training import builder, config as config_lib
from experiments import cli

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


def _with_model_kwargs(model: str, **kwargs):
  config = default_config(model=model)
  config.model_kwargs.update(kwargs)
  return config


def test_model_kwargs_reach_the_model():
  config = _with_model_kwargs('resnet20', normalization='group', widths=(8, 16, 32))
  config_lib.validate(config, num_devices=1)
  model = builder.create_model(config, 10, (32, 32, 3))
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
  assert 'batch_stats' not in variables  # Group norm keeps no running statistics.
  kernels = [leaf.shape for leaf in jax.tree.leaves(variables['params']) if leaf.ndim == 4]
  assert (3, 3, 3, 8) in kernels and max(k[-1] for k in kernels) == 32  # stem, last stage


@pytest.mark.parametrize('model,key,message', [
    ('resnet20', 'nosuchfield', "model_kwargs.nosuchfield: 'resnet20' has no field 'nosuchfield'; "
                                'its fields are: block, drop_path_rate, normalization, shortcut'),
    ('resnet20', 'normalisation', "(did you mean 'normalization'?)"),
    # A function is not settable: only the bool is listed.
    ('lenet5', 'activation', "'lenet5' has no field 'activation'; its fields are: pool_first"),
])
def test_unknown_model_kwargs_are_named(model, key, message):
  with pytest.raises(config_lib.ConfigError, match=re.escape(message)):
    config_lib.validate(_with_model_kwargs(model, **{key: 1}), num_devices=1)


@pytest.mark.parametrize('saved,current', [
    ({}, {'normalization': 'group'}), ({'normalization': 'batch'}, {'normalization': 'group'})])
def test_a_checkpoint_resumes_only_with_its_own_model_kwargs(saved, current):
  old = config_lib.flat(_with_model_kwargs('resnet20', **saved))
  new = config_lib.flat(_with_model_kwargs('resnet20', **current))
  with pytest.raises(config_lib.ResumeError, match='model_kwargs'):
    config_lib.check_resume(old, new, step=10, workdir='w')
  assert config_lib.check_resume(new, new, step=10, workdir='w') == {}


@pytest.mark.parametrize('text,value', [('group', 'group'), ('2', 2), ('0.5', 0.5), ('true', True),
                                        ('False', False), ('(16, 32)', (16, 32))])
def test_model_kwargs_from_the_command_line_are_python_literals_or_strings(text, value):
  config = default_config()
  config.lock()
  cli._set_model_kwargs(config, [('field', text)])
  assert config.model_kwargs.field == value


def test_the_evaluation_batch_rounds_up_to_the_devices_and_the_training_batch_stays_strict():
  config = default_config(eval_batch_size=1000, batch_size=129)
  assert config_lib.eval_batch_size(config, 3) == 1002
  assert config_lib.eval_batch_size(config, 4) == 1000
  config_lib.validate(config, num_devices=3)
  with pytest.raises(config_lib.ConfigError, match='batch_size=129 is not divisible by the 2'):
    config_lib.validate(config, num_devices=2)

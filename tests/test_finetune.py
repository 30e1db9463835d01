"""Fine-tuning: heads, starting from a workdir or a torchvision file, freezing, rates, resuming."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util
from safetensors.numpy import save_file

from configs import default
from convjax import models, parallel
from convjax.models import torchvision_weights
from convjax.training import (builder, checkpoint, config as config_lib, finetune, loop, metrics,
                              optimizer, saved_run)
from tests import test_models
from tests.test_weights import TINY, random_state

TINY_RESNET = TINY['resnet18']


def flat_params(tree):
  return traverse_util.flatten_dict(tree)


# ------------------------------------------------------------------------------------------------
# The registry's heads.

@pytest.mark.parametrize('name', test_models.edit_loop(models.list_models()))
def test_the_head_is_exactly_what_the_number_of_classes_shapes(name):
  """ModelSpec.head names the layers whose shapes follow num_classes, no more and no fewer (for
  a model with parameter-free class scores, none)."""
  spec = models.get_spec(name)
  extra = {'aux_logits': True} if models.has_field(name, 'aux_logits') else {}
  images = jnp.zeros((1,) + spec.input_shape)
  shapes = {n: flat_params(jax.eval_shape(
      lambda: models.create(name, n, **extra).init(jax.random.key(0), images, train=False)
  )['params']) for n in (7, 11)}
  changed = {path[0] for path, leaf in shapes[7].items() if leaf.shape != shapes[11][path].shape}
  head = {path[0] for path in shapes[7] if models.in_head(spec.head, path[0])}
  assert changed == head and bool(head) == bool(spec.head)


# ------------------------------------------------------------------------------------------------
# The starting variables.

def tiny_config(**fields):
  """Tiny ResNet-18 (torchvision's layout, a few channels) on digits at 32x32, ImageNet stem."""
  config = default.get_config()
  config.update({**dict(model='resnet18', dataset='digits', image_size=32, small_inputs=False,
                        batch_size=64, eval_batch_size=200, num_train_steps=2, log_every_steps=1,
                        checkpoint_every_steps=2, eval_every_steps=2, optimizer='momentum',
                        learning_rate=0.05), **fields})
  config.model_kwargs.update(TINY_RESNET)
  return config


def fresh_variables(config):
  return builder.build(config, parallel.DataParallel(1), builder.DataSpec(
      (32, 32, 1), 10, (0.5,), (0.25,), 1000)).init_variables()


@pytest.fixture
def torch_file(tmp_path):
  """A torchvision-named ResNet-18 state dict (tiny, RGB, 7 classes) as .safetensors."""
  path = str(tmp_path / 'resnet18.safetensors')
  save_file(random_state('resnet18', num_classes=7, **TINY_RESNET), path)
  return path


def test_a_torchvision_file_starts_the_run_with_a_new_head_and_a_grayscale_stem(torch_file):
  config = tiny_config(init_from=torch_file)
  fresh = fresh_variables(config)
  variables, line = finetune.initial_variables(config, fresh)
  source = torchvision_weights.load_torch('resnet18', torch_file, 7, **TINY_RESNET)
  assert line.endswith(f'from {torch_file}, head re-initialised')
  got, want, new = map(flat_params, (variables, source, fresh))
  assert set(got) == set(new)
  for path, value in got.items():
    assert value.shape == new[path].shape
    if path[1] == 'classifier':  # 10 digits, not the file's 7 classes: the fresh head.
      np.testing.assert_array_equal(value, new[path])
    elif path[1:] == ('stem_conv', 'kernel'):  # RGB summed for grayscale: [7, 7, 3, 4] -> 1.
      np.testing.assert_allclose(value, want[path].sum(2, keepdims=True), rtol=1e-6)
    else:
      np.testing.assert_array_equal(value, want[path])


def test_a_converted_workdir_starts_a_run_as_its_weights_file_does(tmp_path, torch_file):
  converted = default.get_config()
  converted.update(model='resnet18', dataset='imagenet2012', num_classes=7)
  converted.model_kwargs.update(TINY_RESNET)
  workdir = str(tmp_path / 'converted')
  variables = torchvision_weights.load_torch('resnet18', torch_file, 7, **TINY_RESNET)
  saved_run.write_converted(workdir, converted, variables, torch_file)
  fresh = fresh_variables(tiny_config())
  from_file, _ = finetune.initial_variables(tiny_config(init_from=torch_file), fresh)
  from_workdir, line = finetune.initial_variables(tiny_config(init_from=workdir), fresh)
  jax.tree.map(np.testing.assert_array_equal, from_workdir, from_file)
  assert line.endswith(f'from {workdir}, head re-initialised')


def test_reinit_head_true_reinitialises_a_head_that_fits(tmp_path):
  path = str(tmp_path / 'ten.safetensors')
  save_file(random_state('resnet18', num_classes=10, **TINY_RESNET), path)
  fresh = fresh_variables(tiny_config())
  for reinit, equal_to_fresh in ((None, False), (True, True)):
    variables, _ = finetune.initial_variables(tiny_config(init_from=path, reinit_head=reinit),
                                              fresh)
    kernel = variables['params']['classifier']['kernel']
    assert np.array_equal(kernel, fresh['params']['classifier']['kernel']) == equal_to_fresh


@pytest.mark.parametrize('fields, message', [
    (dict(reinit_head=False), "head does not fit this run's .*reinit_head"),
    (dict(small_inputs=None), 'stem_conv/kernel has shape 7x7x3x4, but this run.s resnet18 '
                              'needs 3x3x1x4 .*small_inputs=False keeps'),
])
def test_weights_that_do_not_fit_are_named(torch_file, fields, message):
  config = tiny_config(init_from=torch_file, **fields)
  with pytest.raises(finetune.InitFromError, match=message):
    finetune.initial_variables(config, fresh_variables(config))


def test_weights_of_another_width_are_named(torch_file):
  config = tiny_config(init_from=torch_file)
  config.model_kwargs.widths = (4, 6, 8, 16)
  with pytest.raises(torchvision_weights.WeightsError, match="'layer4.0.bn1.running_mean' has shape 8, but resnet18's"):
    finetune.initial_variables(config, fresh_variables(config))


@pytest.fixture(scope='module')
def lenet_on_digits(tmp_path_factory):
  """A workdir of one LeNet-5 step on digits, and its config."""
  config = default.get_config()
  config.update(dataset='digits', image_size=28, num_train_steps=1, batch_size=64)
  workdir = str(tmp_path_factory.mktemp('lenet') / 'run')
  loop.train_and_evaluate(config, workdir)
  return workdir, config


def test_missing_sources_and_other_models_are_refused(tmp_path, lenet_on_digits):
  with pytest.raises(finetune.InitFromError, match='there is no workdir or weights file there'):
    finetune.initial_variables(tiny_config(init_from=str(tmp_path / 'nothing')), {})
  with pytest.raises(finetune.InitFromError, match='holds a lenet5, but this run trains resnet18'):
    finetune.initial_variables(tiny_config(init_from=lenet_on_digits[0]), {})


@pytest.mark.parametrize('dataset, reinit', [('digits', False), ('mnist', True)])
def test_a_workdir_of_another_dataset_gets_a_new_head_even_with_as_many_classes(
    lenet_on_digits, dataset, reinit):
  workdir, config = lenet_on_digits
  config = config.copy_and_resolve_references()
  config.update(init_from=workdir, dataset=dataset)
  fresh = builder.build(config, parallel.DataParallel(1), builder.DataSpec(
      (28, 28, 1), 10, (0.5,), (0.25,), 1000)).init_variables()
  variables, line = finetune.initial_variables(config, fresh)
  kernel = variables['params']['classifier']['kernel']
  assert np.array_equal(kernel, fresh['params']['classifier']['kernel']) == reinit
  assert line.endswith('head re-initialised') == reinit


def test_torch_num_classes_reads_the_classifier():
  assert torchvision_weights.torch_num_classes('resnet18', random_state('resnet18', 7, **TINY_RESNET)) == 7
  with pytest.raises(torchvision_weights.WeightsError, match="no 'classifier.6.weight'"):
    torchvision_weights.torch_num_classes('vgg11', {'fc.weight': np.zeros((3, 2))})


# ------------------------------------------------------------------------------------------------
# Training from the starting point.

def restored(workdir):
  saved = checkpoint.Checkpointer(workdir, max_to_keep=3)
  state = saved.restore(saved.latest_step())
  saved.close()
  return state


def test_a_frozen_backbone_keeps_its_weights_and_batch_statistics(tmp_path, torch_file):
  workdir = str(tmp_path / 'probe')
  loop.train_and_evaluate(tiny_config(init_from=torch_file, freeze='backbone'), workdir)
  start, _ = finetune.initial_variables(tiny_config(init_from=torch_file),
                                        fresh_variables(tiny_config()))
  end = restored(workdir)
  for collection in ('params', 'batch_stats'):
    for path, value in flat_params(end[collection]).items():
      same = np.array_equal(value, flat_params(start[collection])[path])
      assert same != (path[0] == 'classifier'), path  # Only the head moved.
  assert 'head re-initialised' in metrics.read_metrics(workdir)[0]['initialised_from']


@pytest.mark.slow  # Starts processes or trains a real run.
def test_a_resumed_fine_tune_continues_from_its_own_checkpoint(tmp_path, torch_file):
  workdir = str(tmp_path / 'run')
  loop.train_and_evaluate(tiny_config(init_from=torch_file), workdir)
  os.remove(torch_file)  # Read at step 0 only: resuming never needs it again.
  final = loop.train_and_evaluate(tiny_config(init_from=torch_file, num_train_steps=4), workdir)
  assert final.step == 4
  starts = [r for r in metrics.read_metrics(workdir) if r.get('event') == 'start']
  assert ['initialised_from' in r for r in starts] == [True, False]


def test_backbone_lr_scale_and_freeze_split_the_updates():
  params = {'Conv_0': {'kernel': jnp.ones((2, 2))}, 'classifier': {'kernel': jnp.ones((2, 2))}}
  grads = jax.tree.map(jnp.ones_like, params)
  for fields, backbone_step in ((dict(backbone_lr_scale=0.25), -0.025),
                                (dict(freeze='backbone'), 0.0), ({}, -0.1)):
    config = default.get_config()
    config.update(model='lenet5', optimizer='sgd', **fields)
    tx = optimizer.create_optimizer(config, optax.constant_schedule(0.1))
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(updates['classifier']['kernel'], -0.1)
    np.testing.assert_allclose(updates['Conv_0']['kernel'], backbone_step)


@pytest.mark.parametrize('fields, message', [
    (dict(freeze='backbon'), r"unknown freeze 'backbon' \(did you mean 'backbone'\?\)"),
    (dict(freeze='backbone', backbone_lr_scale=0.1), 'no effect on a frozen backbone'),
    (dict(freeze='backbone', model='lenet5_1998'), 'would leave nothing to train'),
    (dict(freeze='backbone', model='googlenet', aux_loss_weight=0.3), 'set aux_loss_weight=0'),
    (dict(backbone_lr_scale=-1.0), 'backbone_lr_scale must be >= 0'),
    (dict(reinit_head=True), 'reinit_head=True applies to weights loaded with init_from'),
])
def test_fine_tuning_fields_are_checked(fields, message):
  config = default.get_config()
  config.update(fields)
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(config, 1)


def test_without_fine_tuning_fields_the_optimiser_is_unchanged():
  config = default.get_config()
  tx = optimizer.create_optimizer(config, optax.constant_schedule(0.1))
  assert not isinstance(tx.init({'a': jnp.zeros(2)}), optax.MultiTransformState)


def test_the_workdir_is_untouched_when_the_weights_do_not_fit(tmp_path, torch_file):
  workdir = tmp_path / 'run'
  with pytest.raises(finetune.InitFromError):
    loop.train_and_evaluate(tiny_config(init_from=torch_file, reinit_head=False), str(workdir))
  assert not workdir.exists()

"""The training recipe's parts, each checked against its closed form or its equivalent."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from convjax import builder, config as config_lib, optim, parallel, steps, train


def test_label_smoothing_loss_at_a_known_logit():
  logits, label, eps = np.array([[2.0, 0.0, -1.0]]), np.array([0]), 0.3
  log_p = logits[0] - np.log(np.exp(logits[0]).sum())
  targets = np.array([1 - eps + eps / 3, eps / 3, eps / 3])
  np.testing.assert_allclose(steps.cross_entropy(logits, label, eps), [-(targets * log_p).sum()],
                             rtol=1e-6)
  np.testing.assert_allclose(steps.cross_entropy(logits, label, 0.0), [-log_p[0]], rtol=1e-6)


class TinyDense(nn.Module):
  """No batch norm and no dropout: accumulation must reproduce the large batch exactly."""
  num_classes: int = 3
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.tanh(nn.Dense(8)(x.reshape((x.shape[0], -1))))
    return nn.Dense(self.num_classes)(x)


def one_step(recipe: steps.Recipe, seed: int = 0):
  dp = parallel.DataParallel(1)
  state = steps.create_train_state(TinyDense(), optax.sgd(0.5), (4, 4, 1), seed=0)
  rng = np.random.default_rng(seed)
  batch = dp.shard({'image': rng.integers(0, 256, (16, 4, 4, 1)).astype(np.uint8),
                    'label': rng.integers(0, 3, 16).astype(np.int32)})
  step = dp.pmap(functools.partial(steps.train_step, normalize=lambda u: u / 255.0,
                                   schedule=optax.constant_schedule(0.5), recipe=recipe))
  new_state, step_metrics = step(dp.replicate(state), batch)
  return dp.unreplicate(new_state).params, jax.device_get(step_metrics)


def test_accumulated_micro_batches_give_the_large_batchs_update():
  whole, whole_metrics = one_step(steps.Recipe())
  for count in (2, 4):
    accumulated, metrics = one_step(steps.Recipe(grad_accum_steps=count))
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6),
                 accumulated, whole)
    np.testing.assert_allclose(metrics['train_loss'], whole_metrics['train_loss'], rtol=1e-5)
    np.testing.assert_allclose(metrics['train_accuracy'], whole_metrics['train_accuracy'])


def test_tta_averages_the_logits_of_the_image_and_its_mirror():
  dp = parallel.DataParallel(1)
  model = TinyDense()
  state = steps.create_train_state(model, optax.sgd(0.1), (4, 4, 1), seed=1)
  images = np.random.default_rng(2).integers(0, 256, (6, 4, 4, 1)).astype(np.uint8)
  labels, normalize = np.arange(6, dtype=np.int32) % 3, lambda u: u / 255.0
  batch = dp.shard({'image': images, 'label': labels, 'mask': np.ones(6, np.float32)})
  evaluate = dp.pmap(functools.partial(steps.eval_step, normalize=normalize,
                                       recipe=steps.Recipe(tta_flip=True)))
  sums = jax.device_get(evaluate(dp.replicate(state), batch))
  logits = lambda x: model.apply({'params': state.params}, normalize(x))
  both = (logits(images) + logits(images[:, :, ::-1])) / 2
  assert sums['tta_correct'][0] == np.sum(np.argmax(both, -1) == labels)
  np.testing.assert_allclose(sums['tta_loss'][0], steps.cross_entropy(both, labels).sum(),
                             rtol=1e-5)
  assert sums['correct'][0] == np.sum(np.argmax(logits(images), -1) == labels)


def schedule_of(digits_config, **fields):
  digits_config.update(learning_rate=0.4, **fields)
  return optim.create_schedule(digits_config, steps_per_epoch=10, total_steps=100)


def test_linear_decays_to_zero_after_warmup(digits_config):
  schedule = schedule_of(digits_config, lr_schedule='linear', warmup_epochs=2.0)
  np.testing.assert_allclose([schedule(s) for s in (0, 10, 20, 60, 100)],
                             [0.0, 0.2, 0.4, 0.2, 0.0], atol=1e-7)


def test_onecycle_is_a_triangle(digits_config):
  schedule = schedule_of(digits_config, lr_schedule='onecycle', onecycle_pct_start=0.25,
                         onecycle_div_factor=25.0)
  np.testing.assert_allclose([schedule(s) for s in (0, 25, 50, 100)],
                             [0.4 / 25, 0.4, 0.4 * 50 / 75, 0.0], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize('fields,message', [
    ({'label_smoothing': 1.0}, 'label_smoothing must be in [0, 1), got 1.0'),
    ({'grad_accum_steps': 0}, 'grad_accum_steps must be a whole number >= 1, got 0'),
    ({'grad_accum_steps': 3}, 'batch_size=64 does not split into grad_accum_steps=3 '
                              'micro-batches on each of the 4 devices; use a multiple of 12'),
    ({'tta_flip': True}, "tta_flip would average 'digits' images with mirrors"),
    ({'lr_schedule': 'onecycle', 'warmup_epochs': 1.0}, 'set warmup_epochs=0'),
    ({'lr_schedule': 'onecycle', 'onecycle_pct_start': 1.0}, 'onecycle_pct_start must be in (0, 1)'),
])
def test_bad_recipe_values_are_refused_in_one_sentence(digits_config, fields, message):
  digits_config.update(**fields)
  with pytest.raises(config_lib.ConfigError, match=None) as raised:
    config_lib.validate(digits_config, num_devices=4)
  assert message in str(raised.value)


def test_a_recipe_run_trains_and_logs(tmp_path, digits_config):
  digits_config.update(label_smoothing=0.1, grad_accum_steps=2, lr_schedule='onecycle',
                       learning_rate=3e-3)
  run = builder.build(digits_config, parallel.DataParallel(),
                      builder.DataSpec((28, 28, 1), 10, (0.3,), (0.4,), 1438))
  assert run.recipe == steps.Recipe(label_smoothing=0.1, grad_accum_steps=2)
  final = train.train_and_evaluate(digits_config, str(tmp_path))
  assert final['num_test_examples'] == 359 and np.isfinite(final['test_loss'])
  assert 'tta_test_accuracy' not in final

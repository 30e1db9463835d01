"""The training recipe's parts, each checked against its closed form or its equivalent."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from convjax import parallel
from convjax.data import mixing
from convjax.nn import layers
from convjax.training import builder, checkpoint, config as config_lib, loop, optimizer, steps
from tests import test_models


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
  step = dp.pmap_step(functools.partial(steps.train_step, normalize=lambda u: u / 255.0,
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
                                       recipe=steps.Recipe(tta_flip=True)),
                     in_axes=parallel.STATE_AND_BATCH)
  sums = jax.device_get(evaluate(dp.replicate(state), batch))
  logits = lambda x: model.apply({'params': state.params}, normalize(x))
  both = (logits(images) + logits(images[:, :, ::-1])) / 2
  assert sums['tta_correct'][0] == np.sum(np.argmax(both, -1) == labels)
  np.testing.assert_allclose(sums['tta_loss'][0], steps.cross_entropy(both, labels).sum(),
                             rtol=1e-5)
  assert sums['correct'][0] == np.sum(np.argmax(logits(images), -1) == labels)


@pytest.mark.parametrize('flip', [False, True])
def test_translated_tta_weighs_the_shifted_views_half(flip):
  """airbench's views, written out by hand: a 2-pixel shift moves the content, the vacated
  pixels are zero (black, as the training crop pads), and the shifted views weigh half."""
  dp = parallel.DataParallel(1)
  model = TinyDense()
  state = steps.create_train_state(model, optax.sgd(0.1), (5, 5, 1), seed=1)
  images = np.random.default_rng(3).integers(1, 256, (6, 5, 5, 1)).astype(np.uint8)
  labels, normalize = np.arange(6, dtype=np.int32) % 3, lambda u: u / 255.0 - 0.5
  batch = dp.shard({'image': images, 'label': labels, 'mask': np.ones(6, np.float32)})
  evaluate = dp.pmap(functools.partial(steps.eval_step, normalize=normalize,
                                       recipe=steps.Recipe(tta_flip=flip, tta_translate=2)),
                     in_axes=parallel.STATE_AND_BATCH)
  sums = jax.device_get(evaluate(dp.replicate(state), batch))
  up_left, down_right = np.zeros_like(images), np.zeros_like(images)
  up_left[:, :3, :3], down_right[:, 2:, 2:] = images[:, 2:, 2:], images[:, :3, :3]
  logits = lambda x: np.asarray(model.apply({'params': state.params}, normalize(x)))
  view = lambda x: (logits(x) + logits(x[:, :, ::-1])) / 2 if flip else logits(x)
  want = view(images) / 2 + (view(up_left) + view(down_right)) / 4
  np.testing.assert_allclose(sums['tta_loss'][0], steps.cross_entropy(want, labels).sum(),
                             rtol=1e-5)
  assert sums['tta_correct'][0] == np.sum(np.argmax(want, -1) == labels)


def schedule_of(digits_config, **fields):
  digits_config.update(learning_rate=0.4, **fields)
  return optimizer.create_schedule(digits_config, steps_per_epoch=10, total_steps=100)


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
    ({'tta_flip': True}, "tta_flip would average 'digits' examples with mirrors"),
    ({'tta_translate': -1}, 'tta_translate must be a whole number of pixels >= 0, got -1'),
    ({'tta_translate': 28}, 'tta_translate=28 would shift every pixel out of the 28x28 images'),
    ({'dataset': 'spoken_digit', 'model': 'm5', 'image_size': None, 'tta_translate': 1},
     "tta_translate shifts images; 'spoken_digit' holds audio examples"),
    ({'lr_schedule': 'onecycle', 'warmup_epochs': 1.0}, 'set warmup_epochs=0'),
    ({'lr_schedule': 'onecycle', 'onecycle_pct_start': 1.0}, 'onecycle_pct_start must be in (0, 1)'),
    ({'mixup_alpha': -0.2}, 'mixup_alpha must be >= 0 (0 turns it off), got -0.2'),
    ({'mix_switch_prob': 1.5}, 'mix_switch_prob is a probability, in [0, 1], got 1.5'),
    ({'ema_decay': 1.0}, 'ema_decay must be in [0, 1) (0 turns it off), got 1.0'),
    ({'drop_path_rate': 0.1}, "needs a model with residual or dense blocks (ResNets, DenseNet), "
                              "and 'lenet5' has none"),
    ({'model': 'resnet20', 'drop_path_rate': 0.1, 'model_kwargs.drop_path_rate': 0.2},
     'drop_path_rate is set twice, as drop_path_rate=0.1 and model_kwargs.drop_path_rate=0.2'),
    ({'augment.random_erasing': 2.0}, 'augment.random_erasing is a probability, in [0, 1]'),
    ({'augment.erasing_scale': (0.5, 0.1)}, 'augment.erasing_scale must be (low, high) with '
                                            '0 < low <= high <= 1, got (0.5, 0.1)'),
    ({'augment.randaugment_ops': -1}, 'augment.randaugment_ops must be a whole number >= 0'),
    ({'augment.randaugment_magnitude': 11.0}, 'augment.randaugment_magnitude must be in [0, 10]'),
])
def test_bad_recipe_values_are_refused_in_one_sentence(digits_config, fields, message):
  for field, value in fields.items():
    group, _, name = field.rpartition('.')
    (digits_config[group] if group else digits_config)[name] = value
  with pytest.raises(config_lib.ConfigError, match=None) as raised:
    config_lib.validate(digits_config, num_devices=4)
  assert message in str(raised.value)


def test_a_recipe_run_trains_and_logs(tmp_path, digits_config):
  digits_config.update(label_smoothing=0.1, grad_accum_steps=2, lr_schedule='onecycle',
                       learning_rate=3e-3)
  run = builder.build(digits_config, parallel.DataParallel(),
                      builder.DataSpec((28, 28, 1), 10, (0.3,), (0.4,), 1438))
  assert run.recipe == steps.Recipe(label_smoothing=0.1, grad_accum_steps=2, head=('classifier',))
  final = loop.train_and_evaluate(digits_config, str(tmp_path)).metrics
  assert final['num_test_examples'] == 359 and np.isfinite(final['test_loss'])
  assert 'tta_test_accuracy' not in final


@pytest.mark.slow  # Starts processes or trains a real run.
def test_every_part_trains_and_a_resumed_run_ends_bitwise_where_a_straight_one_does(
    tmp_path, digits_config):
  """Mixup, CutMix, EMA, random erasing and RandAugment together; the EMA is checkpointed."""
  digits_config.update(mixup_alpha=0.2, cutmix_alpha=1.0, ema_decay=0.9, lr_schedule='constant',
                       learning_rate=3e-3)
  digits_config.augment.update(random_erasing=0.5, randaugment_ops=2, randaugment_magnitude=5.0)
  straight, resumed = str(tmp_path / 'straight'), str(tmp_path / 'resumed')
  final = loop.train_and_evaluate(digits_config, straight).metrics
  assert 0 <= final['ema_test_accuracy'] <= 1 and np.isfinite(final['ema_test_loss'])
  digits_config.num_train_steps = 6
  loop.train_and_evaluate(digits_config, resumed)
  digits_config.num_train_steps = 12
  loop.train_and_evaluate(digits_config, resumed)
  restore = lambda workdir: checkpoint.Checkpointer(workdir, None, create=False).restore(12)
  a, b = restore(straight), restore(resumed)
  assert set(a['ema']) == {'params', 'batch_stats'}
  jax.tree.map(np.testing.assert_array_equal, a, b)


BATCH = np.random.default_rng(3).normal(size=(8, 6, 5, 1)).astype(np.float32)
LABELS = np.arange(8, dtype=np.int32) % 3


@pytest.mark.parametrize('smoothing', [0.0, 0.2])
def test_mixed_targets_sum_to_one_and_weigh_each_label_by_lam(smoothing):
  lam = np.linspace(0.1, 0.9, 8).astype(np.float32)
  targets = np.asarray(mixing.mixed_targets(LABELS, LABELS[::-1], lam, 3, smoothing))
  np.testing.assert_allclose(targets.sum(-1), 1.0, rtol=1e-6)
  own = targets[np.arange(8), LABELS]
  same = LABELS == LABELS[::-1]
  expected = np.where(same, 1.0, lam) * (1 - smoothing) + smoothing / 3
  np.testing.assert_allclose(own, expected, rtol=1e-6)


def test_mixup_blends_each_image_with_its_partner():
  mixed, lam = mixing.mix(jax.random.PRNGKey(0), jnp.asarray(BATCH), mixing.Mixing(mixup_alpha=0.4))
  assert 0 < float(lam) < 1
  np.testing.assert_allclose(mixed, lam * BATCH + (1 - lam) * BATCH[::-1], rtol=1e-6, atol=1e-6)


def test_cutmix_pastes_a_box_and_lam_is_the_area_left():
  for seed in range(8):
    mixed, lam = mixing.mix(jax.random.PRNGKey(seed), jnp.asarray(BATCH),
                            mixing.Mixing(cutmix_alpha=1.0))
    pasted = np.all(np.asarray(mixed) == BATCH[::-1], axis=(0, 3)) & np.any(
        np.asarray(mixed) != BATCH, axis=(0, 3))
    kept = np.all(np.asarray(mixed) == BATCH, axis=(0, 3))
    assert np.all(pasted | kept)
    rows, cols = np.nonzero(pasted)
    if rows.size:  # A box: its bounding rectangle is all pasted.
      assert pasted.sum() == (np.ptp(rows) + 1) * (np.ptp(cols) + 1)
    np.testing.assert_allclose(lam, 1 - pasted.sum() / 30, rtol=1e-6)


def test_mix_prob_and_switch_prob_pick_how_often():
  images = jnp.asarray(BATCH)
  never = mixing.Mixing(mixup_alpha=1.0, cutmix_alpha=1.0, prob=0.0)
  mixed, lam = mixing.mix(jax.random.PRNGKey(0), images, never)
  assert float(lam) == 1.0 and np.array_equal(mixed, BATCH)
  both = mixing.Mixing(mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=0.5)
  cutmixed = 0
  for seed in range(64):  # CutMix keeps every pixel of an image or its partner; Mixup blends.
    mixed, _ = mixing.mix(jax.random.PRNGKey(seed), images, both)
    cutmixed += bool(np.all((np.asarray(mixed) == BATCH) | (np.asarray(mixed) == BATCH[::-1])))
  assert 16 < cutmixed < 48


def test_mixed_loss_is_lam_times_one_label_plus_the_rest_times_the_other():
  logits = np.random.default_rng(4).normal(size=(8, 3)).astype(np.float32)
  lam = np.full(8, 0.3, np.float32)
  loss = steps.target_loss(logits, {'label': LABELS, 'partner': LABELS[::-1], 'lam': lam})
  expected = (0.3 * steps.cross_entropy(logits, LABELS)
              + 0.7 * steps.cross_entropy(logits, LABELS[::-1]))
  np.testing.assert_allclose(loss, expected, rtol=1e-5)


def run_steps(recipe: steps.Recipe, count: int):
  """`count` train steps of TinyDense on one device: (the states after each, as host trees)."""
  dp = parallel.DataParallel(1)
  state = dp.replicate(steps.create_train_state(TinyDense(), optax.sgd(0.5), (4, 4, 1), seed=0,
                                                ema=recipe.ema_decay > 0))
  step = dp.pmap_step(functools.partial(steps.train_step, normalize=lambda u: u / 255.0,
                                        schedule=optax.constant_schedule(0.5), recipe=recipe))
  rng, states = np.random.default_rng(5), []
  for _ in range(count):
    batch = dp.shard({'image': rng.integers(0, 256, (16, 4, 4, 1)).astype(np.uint8),
                      'label': rng.integers(0, 3, 16).astype(np.int32)})
    state, _ = step(state, batch)
    states.append(dp.unreplicate(state))
  return states


def test_ema_matches_its_closed_form_with_warm_up():
  decay, count = 0.5, 6
  states = run_steps(steps.Recipe(ema_decay=decay), count)
  initial = steps.create_train_state(TinyDense(), optax.sgd(0.5), (4, 4, 1), seed=0).params
  expected = initial
  for index, state in enumerate(states):  # Step index + 1 averages with min(d, (1+i)/(10+i)).
    d = min(decay, (1 + index) / (10 + index))
    expected = jax.tree.map(lambda e, p: d * e + (1 - d) * p, expected, state.params)
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-6), states[-1].ema['params'],
               expected)
  assert float(steps.ema_decay_at(0, 0.999)) == pytest.approx(0.1)
  assert float(steps.ema_decay_at(10 ** 6, 0.999)) == pytest.approx(0.999)


def test_ema_evaluation_uses_the_averaged_variables():
  state = run_steps(steps.Recipe(ema_decay=0.5), 3)[-1]
  dp, model, normalize = parallel.DataParallel(1), TinyDense(), lambda u: u / 255.0
  images = np.random.default_rng(6).integers(0, 256, (6, 4, 4, 1)).astype(np.uint8)
  labels = np.arange(6, dtype=np.int32) % 3
  batch = dp.shard({'image': images, 'label': labels, 'mask': np.ones(6, np.float32)})
  evaluate = dp.pmap(functools.partial(steps.eval_step, normalize=normalize,
                                       recipe=steps.Recipe(ema_decay=0.5)),
                     in_axes=parallel.STATE_AND_BATCH)
  sums = jax.device_get(evaluate(dp.replicate(state), batch))
  averaged = model.apply(state.ema, normalize(images))
  np.testing.assert_allclose(sums['ema_loss'][0], steps.cross_entropy(averaged, labels).sum(),
                             rtol=1e-5)
  assert sums['ema_correct'][0] == np.sum(np.argmax(averaged, -1) == labels)


def test_drop_path_drops_whole_examples_and_is_the_identity_at_rate_0_and_in_evaluation():
  x = jnp.ones((256, 3, 3, 2))

  class Drop(nn.Module):
    rate: float
    train: bool

    @nn.compact
    def __call__(self, y):
      return layers.drop_path(y, self.rate, self.train)
  rngs = {'dropout': jax.random.PRNGKey(0)}
  out = np.asarray(Drop(0.25, True).apply({}, x, rngs=rngs))
  per_example = out.reshape(256, -1)
  assert np.all((per_example == 0).all(-1) | np.isclose(per_example, 1 / 0.75).all(-1))
  assert 0.15 < (per_example == 0).all(-1).mean() < 0.35
  assert np.array_equal(Drop(0.25, False).apply({}, x), x)
  assert np.array_equal(Drop(0.0, True).apply({}, x, rngs=rngs), x)
  np.testing.assert_allclose(layers.depth_rates(0.2, 4), [0.05, 0.1, 0.15, 0.2])


@pytest.mark.parametrize('name', test_models.edit_loop(['resnet20', 'densenet121']))
def test_drop_path_rate_changes_training_only(name):
  from convjax import models
  shape = (1, 32, 32, 3)
  plain = models.create(name, 10, input_shape=shape[1:])
  dropping = models.create(name, 10, input_shape=shape[1:], drop_path_rate=0.5)
  x = jax.random.normal(jax.random.PRNGKey(0), shape)
  variables = jax.eval_shape(plain.init, jax.random.PRNGKey(0), x)
  assert jax.tree.map(lambda a: a.shape, jax.eval_shape(dropping.init, jax.random.PRNGKey(0), x)) == \
      jax.tree.map(lambda a: a.shape, variables)
  if name == 'densenet121':  # Too large to run in a fast test: the same variables suffice.
    return
  variables = plain.init(jax.random.PRNGKey(0), x)
  np.testing.assert_array_equal(dropping.apply(variables, x), plain.apply(variables, x))
  rngs = {'dropout': jax.random.PRNGKey(1)}
  train_out = lambda model: model.apply(variables, x, train=True, rngs=rngs,
                                        mutable=['batch_stats'])[0]
  assert not np.allclose(train_out(dropping), train_out(plain))

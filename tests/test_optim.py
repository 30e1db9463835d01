import jax.numpy as jnp
import numpy as np
import optax
import pytest
from configs import default

from convjax.training import optimizer


def make_config(**fields):
  config = default.get_config()
  config.update(fields)
  return config


def test_warmup_then_cosine():
  config = make_config(learning_rate=0.4, lr_schedule='cosine', warmup_epochs=1.0)
  schedule = optimizer.create_schedule(config, steps_per_epoch=10, total_steps=110)
  np.testing.assert_allclose([schedule(0), schedule(5), schedule(10), schedule(60), schedule(110)],
                             [0.0, 0.2, 0.4, 0.2, 0.0], atol=1e-6)


def test_step_schedule_decays_at_the_given_epochs():
  config = make_config(learning_rate=1.0, lr_schedule='step', lr_decay_epochs=(2, 3),
                       lr_decay_factor=0.1)
  schedule = optimizer.create_schedule(config, steps_per_epoch=10, total_steps=40)
  np.testing.assert_allclose([schedule(19), schedule(20), schedule(29), schedule(30)],
                             [1.0, 0.1, 0.1, 0.01], rtol=1e-6)


def test_constant_schedule():
  schedule = optimizer.create_schedule(make_config(lr_schedule='constant', learning_rate=0.3), 10, 100)
  np.testing.assert_allclose([schedule(0), schedule(99)], [0.3, 0.3])


@pytest.mark.parametrize('name', optimizer.OPTIMIZERS)
def test_weight_decay_reaches_kernels_but_not_biases(name):
  config = make_config(optimizer=name, weight_decay=0.1, learning_rate=1.0)
  tx = optimizer.create_optimizer(config, optax.constant_schedule(1.0))
  params = {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones((2,))}
  zero_grads = {'kernel': jnp.zeros((2, 2)), 'bias': jnp.zeros((2,))}
  updates, _ = tx.update(zero_grads, tx.init(params), params)
  assert float(jnp.abs(updates['bias']).max()) == 0.0
  assert float(jnp.abs(updates['kernel']).min()) > 0.0


def test_unknown_names_list_the_valid_ones():
  with pytest.raises(ValueError, match="unknown optimizer 'lion'.*adamw"):
    optimizer.create_optimizer(make_config(optimizer='lion'), optax.constant_schedule(1.0))
  with pytest.raises(ValueError, match="unknown lr_schedule 'poly'.*cosine"):
    optimizer.create_schedule(make_config(lr_schedule='poly'), 10, 100)

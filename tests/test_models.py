import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convjax import layers, models


def num_params(model, input_shape):
  variables = jax.eval_shape(
      lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1,) + input_shape), train=False))
  return sum(x.size for x in jax.tree.leaves(variables['params']))


def test_lenet5_has_61706_parameters():
  assert num_params(models.create('lenet5'), (28, 28, 1)) == 61_706


def test_lenet5_parameters_per_layer():
  variables = jax.eval_shape(lambda: models.create('lenet5').init(
      jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)), train=False))
  sizes = {name: sum(x.size for x in jax.tree.leaves(p)) for name, p in variables['params'].items()}
  assert sizes == {'Conv_0': 156, 'Conv_1': 2416, 'Dense_0': 48120, 'Dense_1': 10164,
                   'Dense_2': 850}


def test_lenet5_output_shape_and_num_classes_override():
  model = models.create('lenet5', num_classes=7)
  x = jnp.ones((3, 28, 28, 1))
  variables = model.init(jax.random.PRNGKey(0), x, train=False)
  assert model.apply(variables, x, train=True).shape == (3, 7)
  assert num_params(model, (28, 28, 1)) == 61_706 - 3 * 85


def test_half_precision_computes_in_bfloat16_with_float32_params_and_logits():
  model = models.create('lenet5', dtype=jnp.bfloat16)
  x = jnp.ones((2, 28, 28, 1))
  variables = model.init(jax.random.PRNGKey(0), x, train=False)
  assert {p.dtype for p in jax.tree.leaves(variables)} == {jnp.dtype('float32')}
  assert model.apply(variables, x).dtype == jnp.float32


def test_registry_lists_gets_and_rejects():
  assert models.list_models() == ['lenet5']
  assert models.list_models('lenet*') == ['lenet5']
  assert models.list_models('resnet*') == []
  spec = models.get_spec('lenet5')
  assert (spec.input_shape, spec.num_classes) == ((28, 28, 1), 10)
  with pytest.raises(models.UnknownModelError, match="unknown model 'lenet7'.*lenet5"):
    models.create('lenet7')


@pytest.mark.parametrize('shape', [(2, 8, 8, 3), (1, 7, 9, 2), (3, 28, 28, 6)])
def test_reshape_max_pool_matches_reduce_window_values_and_gradients(shape):
  x = jax.random.normal(jax.random.PRNGKey(1), shape)
  np.testing.assert_array_equal(layers.max_pool_2x2(x), layers.reference_max_pool_2x2(x))
  cotangent = jax.random.normal(jax.random.PRNGKey(2), layers.max_pool_2x2(x).shape)
  grad = lambda pool: jax.grad(lambda y: jnp.sum(pool(y) * cotangent))(x)
  np.testing.assert_allclose(grad(layers.max_pool_2x2), grad(layers.reference_max_pool_2x2))

"""Faster formulations compute the same numbers: row-GEMM convolutions, the 2x2 max pool, the
materialised conv input, and the CPU device split."""
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from convjax.nn import conv_backend, layers
from tests import test_models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _lax_conv(x, kernel, strides, padding):
  return lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=conv_backend.NHWC)


@pytest.mark.parametrize('shape,kernel,strides,padding', [
    ((3, 28, 28, 1), (5, 5, 1, 6), (1, 1), ((2, 2), (2, 2))),  # LeNet-5 C1.
    ((3, 14, 14, 6), (5, 5, 6, 16), (1, 1), 'VALID'),          # LeNet-5 C3.
    ((2, 9, 11, 3), (3, 3, 3, 4), (2, 2), ((1, 1), (1, 1))),   # Strided, odd, non-square.
    ((2, 10, 7, 2), (3, 2, 2, 5), (1, 2), 'SAME'),             # Rectangular kernel, SAME.
    ((1, 8, 8, 4), (1, 1, 4, 3), (2, 2), 'VALID'),             # 1x1 with stride.
])
def test_row_gemm_conv_matches_lax_in_value_and_both_gradients(shape, kernel, strides, padding):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=shape), jnp.float32)
  w = jnp.asarray(rng.normal(size=kernel), jnp.float32)
  expected, expected_vjp = jax.vjp(lambda x, w: _lax_conv(x, w, strides, padding), x, w)
  got, got_vjp = jax.vjp(lambda x, w: conv_backend.conv2d_rows(x, w, strides, padding), x, w)
  assert got.shape == expected.shape
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
  dy = jnp.asarray(rng.normal(size=expected.shape), jnp.float32)
  for g, e in zip(got_vjp(dy), expected_vjp(dy)):
    np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-3)


def test_band_matrix_is_the_kernel_shifted_along_the_width():
  kernel = jnp.arange(1, 1 + 2 * 3, dtype=jnp.float32).reshape(2, 3, 1, 1)  # kh=2, kw=3.
  band = np.asarray(conv_backend.band_matrix(kernel, padded_width=5, out_width=2, stride=2))
  # Rows: (kernel row i, input column p); columns: output column q. Output column q starts at 2q.
  expected = np.zeros((2, 5, 2))
  expected[:, 0:3, 0] = [[1, 2, 3], [4, 5, 6]]
  expected[:, 2:5, 1] = [[1, 2, 3], [4, 5, 6]]
  np.testing.assert_array_equal(band, expected.reshape(10, 2))


def test_the_rule_takes_rows_for_narrow_convs_on_cpu_only():
  assert conv_backend.prefers_rows((5, 5, 1, 6), padded_width=32, backend='cpu')       # LeNet C1.
  assert conv_backend.prefers_rows((5, 5, 6, 16), padded_width=14, backend='cpu')      # LeNet C3.
  assert not conv_backend.prefers_rows((3, 3, 3, 16), padded_width=34, backend='cpu')  # Sparse band.
  assert not conv_backend.prefers_rows((3, 3, 16, 16), padded_width=34, backend='cpu')  # Wide.
  assert not conv_backend.prefers_rows((5, 5, 1, 6), padded_width=32, backend='gpu')


def test_conv_layers_compute_the_same_function_whichever_lowering_runs():
  rng = np.random.default_rng(1)
  for kernel_size, features, padding in ((5, 6, 2), (3, 32, 'HALF')):  # Rows, then lax.
    layer = layers.conv2d(features, kernel_size, padding=padding)
    x = jnp.asarray(rng.normal(size=(2, 12, 12, 1 if features == 6 else 8)), jnp.float32)
    variables = layer.init(jax.random.PRNGKey(0), x)
    pad = kernel_size // 2
    expected = _lax_conv(x, variables['params']['kernel'], (1, 1), ((pad, pad),) * 2)
    np.testing.assert_allclose(layer.apply(variables, x),
                               expected + variables['params']['bias'], rtol=1e-4, atol=1e-4)


def test_materialize_is_the_identity_in_value_and_gradient():
  x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 3, 3, 2)), jnp.float32)
  np.testing.assert_array_equal(jax.jit(conv_backend.materialize)(x), x)
  np.testing.assert_array_equal(jax.grad(lambda x: jnp.sum(conv_backend.materialize(x) ** 2))(x), 2 * x)


@pytest.mark.parametrize('shape', [(3, 6, 6, 2), (2, 7, 5, 3)])
def test_max_pool_2x2_equals_reduce_window_bitwise_even_with_ties(shape):
  rng = np.random.default_rng(3)
  for x in (rng.normal(size=shape), rng.integers(0, 3, size=shape)):  # Integers: many ties.
    x = jnp.asarray(x, jnp.float32)
    expected, expected_vjp = jax.vjp(layers.reference_max_pool_2x2, x)
    got, got_vjp = jax.vjp(layers.max_pool_2x2, x)
    dy = jnp.asarray(rng.normal(size=expected.shape), jnp.float32)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got_vjp(dy)[0], expected_vjp(dy)[0])


@pytest.mark.parametrize('window, strides, padding, shape', [
    ((3, 3), (2, 2), 'VALID', (2, 13, 11, 3)),           # AlexNet's overlapping pools
    ((3, 3), (2, 2), ((1, 1), (1, 1)), (2, 12, 12, 2)),  # ResNet's and DenseNet's stem
    ((3, 3), (1, 1), 'SAME', (1, 7, 6, 2)),              # GoogLeNet's pool branch
    ((3, 3), (2, 2), ((0, 1), (0, 1)), (1, 8, 8, 2)),    # 'CEIL'
    ((2, 3), (1, 2), 'VALID', (2, 6, 9, 1)),
    ((3,), (2,), 'VALID', (2, 9, 2)),                    # 1-D
    ((2, 2, 2), (2, 2, 2), 'VALID', (1, 4, 5, 4, 2))])   # 3-D
@pytest.mark.slow  # Many pool shapes, compiled one by one.
def test_max_pool_from_taps_equals_reduce_window_bitwise_even_with_ties(window, strides, padding,
                                                                        shape):
  rng = np.random.default_rng(4)
  for x in (rng.normal(size=shape), rng.integers(0, 3, size=shape)):  # Integers: many ties.
    x = jnp.asarray(x, jnp.float32)
    expected, expected_vjp = jax.vjp(lambda x: nn.max_pool(x, window, strides, padding), x)
    got, got_vjp = jax.vjp(lambda x: layers.max_pool_taps(x, window, strides, padding), x)
    # Integer cotangents: overlapping windows add several into one input, and integer sums are
    # exact in any order, so the comparison can be bitwise.
    dy = jnp.asarray(rng.integers(-4, 5, size=expected.shape), jnp.float32)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got_vjp(dy)[0], expected_vjp(dy)[0])


def test_max_pool_from_taps_in_bfloat16_equals_reduce_window_bitwise():
  """bfloat16 compares and sums in float32 (layers._first_max, for XLA:CPU's speed): the same
  maxima, winners and integer gradient sums as reduce_window's in bfloat16, under jit."""
  rng = np.random.default_rng(5)
  window, strides, padding = (3, 3), (2, 2), ((1, 1), (1, 1))  # ResNet's stem pool
  for x in (rng.normal(size=(2, 12, 12, 2)), rng.integers(0, 3, size=(2, 12, 12, 2))):
    x = jnp.asarray(x, jnp.bfloat16)
    dy = jnp.asarray(rng.integers(-4, 5, size=(2, 6, 6, 2)), jnp.bfloat16)
    def pool_and_grad(pool):
      y, vjp = jax.vjp(lambda x: pool(x, window, strides, padding), x)
      return y, vjp(dy)[0]
    got = jax.jit(lambda: pool_and_grad(layers.max_pool_taps))()
    expected = jax.jit(lambda: pool_and_grad(nn.max_pool))()
    for g, e in zip(got, expected):
      assert g.dtype == jnp.bfloat16
      np.testing.assert_array_equal(np.asarray(g, np.float32), np.asarray(e, np.float32))


def test_max_pool_gradients_survive_xla_recomputing_the_pool_input(monkeypatch):
  """Under jit XLA may recompute a pool's input (batch norm, ReLU) inside the backward pass with
  other rounding; a backward that compared that recomputation with the forward's maximum lost
  most of VGG-11-BN's pool gradients (0.3 off on a tiny model). Reference: reduce_window."""
  model = test_models.tiny_model('vgg11_bn', (16, 16, 3))
  images = jax.random.normal(jax.random.PRNGKey(0), (3, 16, 16, 3))
  variables = model.init(jax.random.PRNGKey(2), images)

  def grads():
    def loss(params):
      logits, _ = model.apply({**variables, 'params': params}, images, train=True,
                              rngs={'dropout': jax.random.PRNGKey(1)}, mutable=['batch_stats'])
      return jnp.sum(jax.nn.log_softmax(logits)[:, 0])
    return jax.jit(jax.grad(loss))(variables['params'])

  ours = grads()
  monkeypatch.setattr(layers, 'max_pool_taps', lambda x, *args: nn.max_pool(x, *args))
  for got, expected in zip(jax.tree.leaves(ours), jax.tree.leaves(grads())):
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)

"""Shared layers against their definitions: grouped and n-d convolution, every pooling kind, LRN,
activations and option-A shortcuts."""
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convjax.nn import layers
from convjax.models import resnet


def numpy_pool(x, kind, window, stride, ceil=False):
  """Pooling by explicit loops over output positions: the definition. x: [b, h, w, c]."""
  reduce = {'max': np.max, 'min': np.min, 'sum': np.sum, 'avg': np.mean}[kind]
  _, h, w, _ = x.shape
  out_size = lambda n: (-(-(n - window) // stride) if ceil else (n - window) // stride) + 1
  out = np.zeros((x.shape[0], out_size(h), out_size(w), x.shape[3]), x.dtype)
  for i, j in itertools.product(range(out.shape[1]), range(out.shape[2])):
    patch = x[:, i * stride:i * stride + window, j * stride:j * stride + window, :]
    out[:, i, j, :] = reduce(patch, axis=(1, 2))  # Ceil mode: a partial window at the edge.
  return out


@pytest.mark.parametrize('kind', layers.POOLS)
@pytest.mark.parametrize('window,stride,ceil', [(2, 2, False), (3, 2, False), (3, 2, True),
                                                (3, 1, False)])
def test_every_pooling_kind_matches_numpy(kind, window, stride, ceil):
  x = np.random.default_rng(0).normal(size=(2, 9, 8, 3)).astype(np.float32)
  got = layers.pool(jnp.asarray(x), kind, window, stride, padding='CEIL' if ceil else 'VALID')
  np.testing.assert_allclose(got, numpy_pool(x, kind, window, stride, ceil), rtol=1e-5, atol=1e-6)


def test_padded_max_and_min_pools_ignore_the_padding():
  x = -jnp.ones((1, 4, 4, 1))  # All negative: a zero-padded max would wrongly give 0.
  assert float(layers.max_pool(x, window=3, strides=2, padding=1).max()) == -1.0
  assert float(layers.min_pool(-x, window=3, strides=2, padding=1).min()) == 1.0


@pytest.mark.parametrize('kind', layers.POOLS)
def test_global_pool_reduces_every_spatial_axis(kind):
  x = np.random.default_rng(1).normal(size=(2, 3, 4, 5, 6)).astype(np.float32)  # 3-D volume.
  reduce = {'max': np.max, 'min': np.min, 'sum': np.sum, 'avg': np.mean}[kind]
  np.testing.assert_allclose(layers.global_pool(jnp.asarray(x), kind), reduce(x, axis=(1, 2, 3)),
                             rtol=1e-5)


def test_unknown_pool_kind_is_named():
  with pytest.raises(ValueError, match="unknown pooling 'median'.*max, avg, sum, min"):
    layers.pool(jnp.zeros((1, 4, 4, 1)), 'median', 2)


def test_grouped_conv_is_independent_convs_on_channel_groups():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 9, 6))
  grouped = layers.conv2d(4, 3, groups=2, padding='VALID')
  variables = grouped.init(jax.random.PRNGKey(1), x)
  kernel, bias = variables['params']['kernel'], variables['params']['bias']
  assert kernel.shape == (3, 3, 3, 4)  # Each output sees in_channels / groups = 3 inputs.
  halves = []
  for g in range(2):
    single = layers.conv2d(2, 3, padding='VALID')
    halves.append(single.apply({'params': {'kernel': kernel[..., 2 * g:2 * g + 2],
                                           'bias': bias[2 * g:2 * g + 2]}},
                               x[..., 3 * g:3 * g + 3]))
  np.testing.assert_allclose(grouped.apply(variables, x), jnp.concatenate(halves, -1),
                             rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('ndim', [1, 2, 3])
def test_conv_in_1_2_3_dimensions_with_stride_padding_and_dilation(ndim):
  n, k, stride, pad, dilation = 11, 3, 2, 1, 2
  x = jnp.ones((1,) + (n,) * ndim + (2,))
  layer = layers.conv(5, k, ndim=ndim, strides=stride, padding=pad, dilation=dilation)
  out = jax.eval_shape(lambda: layer.init_with_output(jax.random.PRNGKey(0), x)[0])
  expected = (n + 2 * pad - dilation * (k - 1) - 1) // stride + 1  # The output-size formula.
  assert out.shape == (1,) + (expected,) * ndim + (5,)


def test_lrn_matches_the_papers_formula():
  a = np.random.default_rng(2).normal(size=(2, 3, 3, 7)).astype(np.float32)
  k, n, alpha, beta = 2.0, 5, 1e-4, 0.75
  expected = np.empty_like(a)
  for i in range(7):  # b_i = a_i / (k + alpha * sum_{j=max(0,i-n/2)}^{min(N-1,i+n/2)} a_j^2)^beta
    lo, hi = max(0, i - n // 2), min(6, i + n // 2)
    expected[..., i] = a[..., i] / (k + alpha * np.sum(a[..., lo:hi + 1] ** 2, -1)) ** beta
  got = layers.local_response_norm(jnp.asarray(a), size=n, k=k, alpha=alpha, beta=beta)
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  # Large activations are damped: the normalisation is not the identity.
  big = layers.local_response_norm(jnp.full((1, 1, 1, 5), 100.0), size=n, k=k, alpha=alpha, beta=beta)
  assert float(big[0, 0, 0, 2]) < 100.0 / 2 ** beta


def test_scaled_tanh_maps_plus_minus_one_to_themselves():
  np.testing.assert_allclose(layers.scaled_tanh(jnp.array([1.0, -1.0, 0.0])), [1.0, -1.0, 0.0],
                             atol=2e-4)
  assert set(layers.ACTIVATIONS) == {'relu', 'elu', 'tanh', 'sigmoid', 'gelu', 'scaled_tanh'}


def test_elu_matches_jax_in_values_and_gradient_from_its_output():
  x = jnp.concatenate([jnp.linspace(-20.0, 5.0, 101), jnp.array([0.0, -1e-8, 1e-8])])
  np.testing.assert_allclose(layers.elu(x), jax.nn.elu(x), atol=1.2e-7)
  np.testing.assert_allclose(jax.grad(lambda v: layers.elu(v).sum())(x),
                             jax.grad(lambda v: jax.nn.elu(v).sum())(x), atol=1.2e-7)
  assert float(layers.elu(jnp.array(-1.0))) == pytest.approx(np.exp(-1.0) - 1, abs=1e-7)
  half = jnp.array([-2.0, 3.0], jnp.bfloat16)
  assert layers.elu(half).dtype == jnp.bfloat16


def test_dropout_and_batch_norm_switch_with_train():
  class Net(nn.Module):
    @nn.compact
    def __call__(self, x, train):
      return layers.dropout(layers.batch_norm(train)(x), 0.5, train)
  x = jax.random.normal(jax.random.PRNGKey(0), (8, 4)) * 3 + 1
  variables = Net().init(jax.random.PRNGKey(1), x, train=False)
  np.testing.assert_allclose(Net().apply(variables, x, train=False), x / np.sqrt(1 + 1e-5),
                             rtol=1e-5)
  out, _ = Net().apply(variables, x, train=True, rngs={'dropout': jax.random.PRNGKey(2)},
                       mutable=['batch_stats'])
  assert 0.2 < float(jnp.mean(out == 0)) < 0.8  # Dropout zeroed about half.


def test_option_a_shortcut_is_parameter_free_strided_identity_with_zero_channels():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 16))
  out = resnet._shortcut(x, filters=32, strides=2, kind='A', conv=None, norm=None)
  assert out.shape == (2, 4, 4, 32)
  np.testing.assert_array_equal(out[..., :16], x[:, ::2, ::2, :])
  np.testing.assert_array_equal(out[..., 16:], 0.0)
  block = resnet.BasicBlock(32, conv=lambda *a, **k: layers.conv2d(*a, use_bias=False, **k),
                            norm=lambda **k: layers.batch_norm(False, **k), activation=nn.relu,
                            strides=2, shortcut='A')
  params = jax.eval_shape(lambda: block.init(jax.random.PRNGKey(0), x))['params']
  assert sorted(params) == ['BatchNorm_0', 'BatchNorm_1', 'Conv_0', 'Conv_1']  # No projection.


def test_half_padding_is_kernel_size_over_two_on_each_side():
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 8, 8, 2))
  half = layers.conv2d(3, (3, 5), strides=2, padding='HALF')
  variables = half.init(jax.random.PRNGKey(1), x)
  explicit = layers.conv2d(3, (3, 5), strides=2, padding=((1, 1), (2, 2)))
  np.testing.assert_array_equal(half.apply(variables, x), explicit.apply(variables, x))
  same = layers.conv2d(3, (3, 5), strides=2, padding='SAME')
  assert not np.allclose(half.apply(variables, x), same.apply(variables, x))  # SAME pads (0, 1).

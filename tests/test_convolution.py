"""Convolution by definition, matrix and FFT agree with each other, with SciPy and with lax."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal
from hypothesis import given, settings, strategies as st

from convjax.nn import convolution_math

SETTINGS = settings(max_examples=25, deadline=None)


@st.composite
def signal_pairs(draw, max_size=6):
  """Two float64 arrays of the same rank (1-3), each axis 1..max_size long."""
  rank = draw(st.integers(1, 3))
  shapes = [tuple(draw(st.integers(1, max_size)) for _ in range(rank)) for _ in range(2)]
  seed = draw(st.integers(0, 2**31 - 1))
  rng = np.random.default_rng(seed)
  return tuple(rng.normal(size=shape) for shape in shapes)


def valid_possible(f, g):
  return (all(n >= m for n, m in zip(f.shape, g.shape)) or
          all(m >= n for n, m in zip(f.shape, g.shape)))


@SETTINGS
@given(signal_pairs(), st.sampled_from(convolution_math.MODES))
def test_convolve_and_correlate_equal_scipy(pair, mode):
  f, g = pair
  if mode == 'valid' and not valid_possible(f, g):
    with pytest.raises(ValueError, match="mode 'valid' needs one input"):
      convolution_math.convolve(f, g, mode)
    return
  with jax.enable_x64(True):
    np.testing.assert_allclose(convolution_math.convolve(f, g, mode),
                               scipy.signal.convolve(f, g, mode, method='direct'), atol=1e-12)
    np.testing.assert_allclose(convolution_math.correlate(f, g, mode),
                               scipy.signal.correlate(f, g, mode, method='direct'), atol=1e-12)


@pytest.mark.slow  # Many random shapes through the FFT.
@SETTINGS
@given(signal_pairs(), st.sampled_from(convolution_math.MODES))
def test_fft_route_equals_the_direct_sum(pair, mode):
  f, g = pair
  if mode == 'valid' and not valid_possible(f, g):
    return
  with jax.enable_x64(True):
    np.testing.assert_allclose(convolution_math.fft_convolve(f, g, mode),
                               convolution_math.convolve(f, g, mode), atol=1e-10)


@SETTINGS
@given(signal_pairs(max_size=5), st.sampled_from(convolution_math.MODES))
def test_the_tied_weight_matrix_equals_the_direct_sum(pair, mode):
  x, kernel = pair
  if mode == 'valid' and not valid_possible(x, kernel):
    return
  with jax.enable_x64(True):
    matrix = convolution_math.conv_matrix(kernel, x.shape, mode)
    expected = convolution_math.convolve(x, kernel, mode)
    assert matrix.shape == (expected.size, x.size)
    np.testing.assert_allclose(matrix @ x.ravel(), expected.ravel(), atol=1e-12)


@SETTINGS
@given(signal_pairs(max_size=4), st.integers(0, 2**31 - 1))
def test_convolution_commutes_and_associates(pair, seed):
  f, g = pair
  h = np.random.default_rng(seed).normal(size=(3,) * f.ndim)
  with jax.enable_x64(True):
    np.testing.assert_allclose(convolution_math.convolve(f, g), convolution_math.convolve(g, f), atol=1e-12)
    left = convolution_math.convolve(convolution_math.convolve(f, g), h)
    right = convolution_math.convolve(f, convolution_math.convolve(g, h))
    np.testing.assert_allclose(left, right, atol=1e-10)


def test_one_dimensional_matrix_is_toeplitz():
  matrix = np.asarray(convolution_math.conv_matrix(jnp.array([1., 2., 3.]), (4,)))
  np.testing.assert_array_equal(matrix, [[1, 0, 0, 0], [2, 1, 0, 0], [3, 2, 1, 0],
                                         [0, 3, 2, 1], [0, 0, 3, 2], [0, 0, 0, 3]])


def test_two_dimensional_matrix_is_doubly_block_toeplitz():
  kernel = jnp.arange(1., 5.).reshape(2, 2)
  matrix = np.asarray(convolution_math.conv_matrix(kernel, (3, 3), 'full'))  # [16, 9]
  blocks = matrix.reshape(4, 4, 3, 3).transpose(0, 2, 1, 3)  # [out row, in row, out col, in col]
  for i in range(4):
    for j in range(3):
      if 0 <= i - j < 2:  # Block (i, j) is the Toeplitz matrix of kernel row i - j.
        np.testing.assert_array_equal(blocks[i, j], convolution_math.conv_matrix(kernel[i - j], (3,)))
      else:
        assert not blocks[i, j].any()


def test_dropped_ball_and_two_dice():
  die = jnp.full(6, 1 / 6)
  totals = convolution_math.convolve(die, die)  # Totals 2..12.
  np.testing.assert_allclose(totals * 36, [1, 2, 3, 4, 5, 6, 5, 4, 3, 2, 1], rtol=1e-6)
  first, then = jnp.array([0.5, 0.3, 0.2]), jnp.array([0.6, 0.4])  # Land at 0,1,2; roll 0,1.
  np.testing.assert_allclose(convolution_math.convolve(first, then), [0.30, 0.38, 0.24, 0.08], rtol=1e-6)


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.float64])
def test_jit_keeps_the_dtype(dtype):
  with jax.enable_x64(True):
    f = jnp.arange(12, dtype=dtype).reshape(3, 4)
    g = jnp.ones((2, 2), dtype)
    for fn in (convolution_math.convolve, convolution_math.correlate, convolution_math.fft_convolve):
      out = jax.jit(fn, static_argnames='mode')(f, g, mode='same')
      assert out.dtype == dtype and out.shape == (3, 4)
      np.testing.assert_allclose(out, scipy.signal.convolve(np.asarray(f, np.float64),
                                                            np.ones((2, 2)), 'same')
                                 if fn is not convolution_math.correlate else
                                 scipy.signal.correlate(np.asarray(f, np.float64), np.ones((2, 2)), 'same'),
                                 rtol=1e-5, atol=1e-5)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 30), st.integers(1, 7), st.integers(0, 4), st.integers(0, 4),
       st.integers(1, 4), st.integers(1, 3))
def test_output_size_equals_lax(n, f, low, high, stride, dilation):
  """(low, high) padding, and an int p for (p, p)."""
  expected = convolution_math.output_size(n, f, (low, high), stride, dilation)
  if low == high:
    assert convolution_math.output_size(n, f, low, stride, dilation) == expected
  if expected < 1:
    return  # lax refuses kernels wider than the padded input.
  out = jax.eval_shape(lambda x, k: jax.lax.conv_general_dilated(
      x, k, (stride,), [(low, high)], rhs_dilation=(dilation,)),
      jax.ShapeDtypeStruct((1, 1, n), jnp.float32), jax.ShapeDtypeStruct((1, 1, f), jnp.float32))
  assert out.shape[-1] == expected


def test_a_conv_layer_computes_cross_correlation():
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 9, 11, 3))
  layer = nn.Conv(2, (3, 4), padding='VALID', use_bias=False)
  params = layer.init(jax.random.PRNGKey(1), x)
  kernel = params['params']['kernel']  # [3, 4, in=3, out=2]
  out = layer.apply(params, x)
  for o in range(2):
    expected = sum(convolution_math.correlate(x[0, :, :, i], kernel[:, :, i, o], 'valid') for i in range(3))
    np.testing.assert_allclose(out[0, :, :, o], expected, rtol=1e-5, atol=1e-5)
    flipped = sum(convolution_math.convolve(x[0, :, :, i], convolution_math.flip(kernel[:, :, i, o]), 'valid')
                  for i in range(3))
    np.testing.assert_allclose(out[0, :, :, o], flipped, rtol=1e-5, atol=1e-5)


def test_classic_kernels():
  assert set(convolution_math.KERNELS) >= {'identity', 'box_blur', 'gaussian_blur', 'sharpen',
                                           'edge_detect', 'sobel_x', 'sobel_y', 'vertical_line',
                                           'horizontal_line', 'emboss'}
  flat = jnp.full((6, 6), 0.5)
  for name in ('edge_detect', 'sobel_x', 'sobel_y', 'vertical_line', 'horizontal_line'):
    assert abs(convolution_math.KERNELS[name].sum()) < 1e-6, name  # Flat regions give 0.
  for name in ('identity', 'box_blur', 'gaussian_blur', 'sharpen'):
    np.testing.assert_allclose(convolution_math.correlate(flat, convolution_math.KERNELS[name], 'valid'), 0.5,
                               rtol=1e-6)  # Brightness kept.
  step = jnp.tile((jnp.arange(6) >= 3).astype(jnp.float32), (6, 1))  # Dark left, bright right.
  assert float(convolution_math.correlate(step, convolution_math.KERNELS['sobel_x'], 'valid').max()) == 4.0
  assert float(jnp.abs(convolution_math.correlate(step, convolution_math.KERNELS['sobel_y'], 'valid')).max()) == 0.0
  image = jax.random.uniform(jax.random.PRNGKey(0), (5, 7, 3))
  np.testing.assert_allclose(convolution_math.apply_kernel(image, convolution_math.KERNELS['identity']), image)


def test_bad_arguments_say_what_is_wrong():
  with pytest.raises(ValueError, match="unknown mode 'circular'"):
    convolution_math.convolve(jnp.ones(3), jnp.ones(2), 'circular')
  with pytest.raises(ValueError, match='same rank, 1 to 3'):
    convolution_math.convolve(jnp.ones((2, 2)), jnp.ones(2))

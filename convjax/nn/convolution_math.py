"""Convolution from first principles, in pure JAX: the definition, its matrix, its FFT route.

The convolution of f and g at c adds up every way of reaching c as a + b:

    (f * g)(c) = sum_a f(a) g(c - a)

If f(a) is the probability that a dropped ball first lands a units away, and g(b) that it then
rolls b further, (f * g)(c) is the probability of ending up c away. The same sum in two or
three dimensions, over index vectors a and c, is image and volume convolution.

A CNN "convolution" layer computes the cross-correlation instead: it slides the kernel without
flipping it, sum_a f(c + a) g(a). Flipping the kernel turns one into the other, so
`correlate(f, g) == convolve(f, flip(g))`, and a learned kernel is just the flip of some
convolution kernel.

Every function here takes arrays of rank 1 to 3, works in float32 or float64, and jits. The
modes follow scipy.signal.convolve / correlate:
- 'full': every c where f and g overlap at all, shape n + m - 1 per axis;
- 'same': the centre of 'full' with f's shape;
- 'valid': where one input covers the other entirely, shape |n - m| + 1 per axis (one input
  must be at least as large as the other along every axis).
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

MODES = ('full', 'same', 'valid')


def _check(f_shape, g_shape, mode: str) -> None:
  if mode not in MODES:
    raise ValueError(f"unknown mode '{mode}'; valid modes are: {', '.join(MODES)}")
  if not 1 <= len(f_shape) <= 3 or len(f_shape) != len(g_shape):
    raise ValueError(f'inputs must have the same rank, 1 to 3; got shapes {f_shape} and {g_shape}')
  if mode == 'valid' and not (all(n >= m for n, m in zip(f_shape, g_shape)) or
                              all(m >= n for n, m in zip(f_shape, g_shape))):
    raise ValueError(f"mode 'valid' needs one input at least as large as the other along every "
                     f'axis; got shapes {f_shape} and {g_shape}')


def output_shape(f_shape, g_shape, mode: str) -> tuple[int, ...]:
  """The shape that `convolve(f, g, mode)` returns."""
  if mode == 'full':
    return tuple(n + m - 1 for n, m in zip(f_shape, g_shape))
  if mode == 'same':
    return tuple(f_shape)
  return tuple(abs(n - m) + 1 for n, m in zip(f_shape, g_shape))


def _crop(full: jnp.ndarray, f_shape, g_shape, mode: str) -> jnp.ndarray:
  """The centred part of a 'full' result that `mode` keeps (scipy's convention)."""
  shape = output_shape(f_shape, g_shape, mode)
  starts = [(total - size) // 2 for total, size in zip(full.shape, shape)]
  return full[tuple(slice(s, s + size) for s, size in zip(starts, shape))]


@functools.partial(jax.jit, static_argnames='mode')
def convolve(f: jnp.ndarray, g: jnp.ndarray, mode: str = 'full') -> jnp.ndarray:
  """(f * g)(c) = sum_a f(a) g(c - a), computed as that sum: f [n...] * g [m...] -> mode's shape.

  Every pair (a, b) with a + b = c contributes f(a) g(b), so the full result is the sum, over
  every position b of g, of a copy of f scaled by g(b) and shifted by b. The loop runs over the
  smaller input (convolution commutes), one shift-and-add per element.
  """
  f, g = jnp.asarray(f), jnp.asarray(g)
  _check(f.shape, g.shape, mode)
  dtype = jnp.result_type(f, g)
  big, small = (f, g) if f.size >= g.size else (g, f)
  full_shape = output_shape(f.shape, g.shape, 'full')

  def add_shifted_copy(i, out):
    b = jnp.unravel_index(i, small.shape)  # A position in the smaller input.
    window = lax.dynamic_slice(out, b, big.shape)
    return lax.dynamic_update_slice(out, window + small[b] * big, b)

  full = lax.fori_loop(0, small.size, add_shifted_copy, jnp.zeros(full_shape, dtype))
  return _crop(full, f.shape, g.shape, mode)


def flip(g: jnp.ndarray) -> jnp.ndarray:
  """g reversed along every axis: g(-a), shifted back to start at index 0."""
  return jnp.flip(g, axis=tuple(range(jnp.ndim(g))))


@functools.partial(jax.jit, static_argnames='mode')
def correlate(f: jnp.ndarray, g: jnp.ndarray, mode: str = 'full') -> jnp.ndarray:
  """Cross-correlation, what CNN layers compute: sum_a f(c + a) g(a), the kernel not flipped.

  Same modes and shapes as `convolve`; equals scipy.signal.correlate for real inputs.
  """
  return convolve(f, flip(jnp.asarray(g)), mode)


@functools.partial(jax.jit, static_argnames='mode')
def fft_convolve(f: jnp.ndarray, g: jnp.ndarray, mode: str = 'full') -> jnp.ndarray:
  """`convolve` through the convolution theorem: multiply the Fourier transforms.

  Zero-padding both inputs to the full size n + m - 1 makes the FFT's circular convolution
  equal the linear one. Cost O(N log N) for N output elements, against O(N m) directly.
  """
  f, g = jnp.asarray(f), jnp.asarray(g)
  _check(f.shape, g.shape, mode)
  dtype = jnp.result_type(f, g)
  full_shape = output_shape(f.shape, g.shape, 'full')
  axes = tuple(range(f.ndim))
  spectrum = jnp.fft.rfftn(f, full_shape, axes) * jnp.fft.rfftn(g, full_shape, axes)
  full = jnp.fft.irfftn(spectrum, full_shape, axes).astype(dtype)
  return _crop(full, f.shape, g.shape, mode)


@functools.partial(jax.jit, static_argnames=('input_shape', 'mode'))
def conv_matrix(kernel: jnp.ndarray, input_shape, mode: str = 'full') -> jnp.ndarray:
  """The matrix M with M @ x.ravel() == convolve(x, kernel, mode).ravel() for x of input_shape.

  Row c, column a holds kernel(c - a): every row is the same kernel, shifted (tied weights),
  and zero where the kernel does not reach. In 1-D that is a Toeplitz matrix; in 2-D a block
  Toeplitz matrix of Toeplitz blocks (doubly block Toeplitz). Shape
  [prod(output_shape), prod(input_shape)].
  """
  kernel = jnp.asarray(kernel)
  input_shape = tuple(input_shape)
  _check(input_shape, kernel.shape, mode)
  full_shape = output_shape(input_shape, kernel.shape, 'full')
  out_shape = output_shape(input_shape, kernel.shape, mode)
  ndim = len(input_shape)
  # Per axis: the kernel offset c - a between output c (in full coordinates) and input a.
  offsets, valid = [], []
  for axis, (n, m, full, out) in enumerate(zip(input_shape, kernel.shape, full_shape, out_shape)):
    c = np.arange(out) + (full - out) // 2
    d = c[:, None] - np.arange(n)[None, :]  # [out, n]
    shape = [1] * (2 * ndim)
    shape[axis], shape[ndim + axis] = out, n  # Output axes first, then input axes.
    offsets.append(np.clip(d, 0, m - 1).reshape(shape))
    valid.append(((d >= 0) & (d < m)).reshape(shape))
  entries = kernel[tuple(offsets)] * functools.reduce(np.logical_and, valid)
  return entries.reshape(math.prod(out_shape), math.prod(input_shape))


def output_size(n: int, f: int, padding: int | tuple[int, int] = 0, stride: int = 1,
                dilation: int = 1) -> int:
  """A feature map's size: floor((n + 2p - d(f - 1) - 1) / s) + 1.

  n inputs, zero-padded by p on each side (or by low and high zeros, for a (low, high) pair);
  a kernel of f taps spaced d apart spans d(f - 1) + 1 inputs; it fits at every s-th position
  of the padded input.
  """
  padded = n + (sum(padding) if isinstance(padding, tuple) else 2 * padding)
  span = dilation * (f - 1) + 1
  return (padded - span) // stride + 1


def _kernel(rows) -> np.ndarray:
  return np.asarray(rows, np.float32)


# Classic 3x3 image kernels, for `correlate(image, kernel, 'same')` as an image editor applies them.
KERNELS = {
    'identity': _kernel([[0, 0, 0], [0, 1, 0], [0, 0, 0]]),
    'box_blur': _kernel(np.full((3, 3), 1 / 9)),
    'gaussian_blur': _kernel([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16,
    'sharpen': _kernel([[0, -1, 0], [-1, 5, -1], [0, -1, 0]]),
    'edge_detect': _kernel([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]]),  # Sums to 0: flat -> 0.
    'sobel_x': _kernel([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]),  # Responds to left-right change.
    'sobel_y': _kernel([[-1, -2, -1], [0, 0, 0], [1, 2, 1]]),  # Responds to top-bottom change.
    'vertical_line': _kernel([[-1, 2, -1], [-1, 2, -1], [-1, 2, -1]]),
    'horizontal_line': _kernel([[-1, -1, -1], [2, 2, 2], [-1, -1, -1]]),
    'emboss': _kernel([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]),
}


def apply_kernel(image: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
  """Filters each channel of image [h, w, c] (or [h, w]) with a 2-D kernel, 'same' size."""
  image = jnp.asarray(image, jnp.float32)
  if image.ndim == 2:
    return correlate(image, kernel, 'same')
  return jnp.stack([correlate(image[..., i], kernel, 'same') for i in range(image.shape[-1])], -1)

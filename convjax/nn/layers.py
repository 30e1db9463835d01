"""Layers shared by the model families: convolution, pooling, normalisation, activations.

Every function takes channels-last arrays, [batch, *spatial, channels], with 1 to 3 spatial axes,
so the same code serves 1-D signals, images and volumes.

Padding, everywhere: 'VALID' (no padding), 'SAME' (output = ceil(input / stride)), an int p
(p zeros on both sides of every spatial axis, PyTorch's convention), or explicit (low, high)
pairs per spatial axis. Convolutions also take 'HALF': kernel_size // 2 zeros on both sides, the
reference implementations' choice (it keeps the size at stride 1, and at stride 2 aligns windows
as PyTorch does, where 'SAME' would shift them). Pooling also takes 'CEIL': no padding, but a final partial window is kept,
PyTorch's ceil_mode=True, which Caffe-era networks (GoogLeNet, ZFNet, NiN) rely on.
"""
import functools
import itertools
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from convjax import errors
from convjax.nn import conv_backend, convolution_math, onednn_gelu, onednn_norm

Padding = str | int | Sequence[tuple[int, int]]


def _tuple(value: int | Sequence[int], ndim: int) -> tuple[int, ...]:
  return (value,) * ndim if isinstance(value, int) else tuple(value)


def _explicit_padding(padding: Padding, ndim: int) -> Padding:
  """An int p becomes ((p, p),) * ndim; strings and explicit pairs pass through."""
  return ((padding, padding),) * ndim if isinstance(padding, int) else padding


# ------------------------------------------------------------------------------------------------
# Activations.

def scaled_tanh(x: jnp.ndarray) -> jnp.ndarray:
  """LeCun's squashing function f(a) = A tanh(S a), A = 1.7159, S = 2/3 (LeNet-5, Appendix A).

  The constants make f(1) = 1 and f(-1) = -1, with maximal curvature near +-1, so targets of +-1
  sit in the function's useful range rather than on its asymptotes.
  """
  return 1.7159 * jnp.tanh(2.0 / 3.0 * x)


@jax.custom_vjp
def elu(x: jnp.ndarray) -> jnp.ndarray:
  """The exponential linear unit (Clevert, Unterthiner & Hochreiter 2016): x for x > 0, e^x - 1
  otherwise. Like ReLU it is the identity for positive inputs, but negative inputs still pass a
  gradient (e^x), so no unit dies, and mean activations sit nearer zero.

  Same values as `jax.nn.elu` (to float32 rounding) and the same gradient, taken from the output:
  f'(x) = 1 where f(x) > 0, else f(x) + 1, so the backward pass needs no exponential of its own
  (what that saves the main job is measured in PERFORMANCE.md).
  """
  # e^x - 1 rather than expm1: its absolute error near 0 is float32's epsilon, at half the cost.
  return jnp.where(x > 0, x, jnp.exp(jnp.minimum(x, 0)) - 1)


def _elu_forward(x):
  y = elu(x)
  return y, y


def _elu_backward(y, g):
  return (jnp.where(y > 0, g, g * (y + 1)),)


elu.defvjp(_elu_forward, _elu_backward)


def gelu(x: jnp.ndarray, approximate: bool = True) -> jnp.ndarray:
  """x * Phi(x), Phi the normal CDF by erf, or by its tanh approximation with approximate (the
  default, as flax's nn.gelu; PyTorch's nn.GELU() is erf's): [...] -> [...]. oneDNN's kernels
  compute it where the 'onednn' backend is on and take the dtype (onednn_gelu), XLA's loops
  otherwise; the two agree to rounding."""
  if conv_backend.backend_name() == 'onednn' and onednn_gelu.supports(x):
    return onednn_gelu.gelu(x, conv_backend.onednn_threads(), approximate)
  return nn.gelu(x, approximate=approximate)


ACTIVATIONS: dict[str, Callable[[jnp.ndarray], jnp.ndarray]] = {
    'relu': nn.relu,
    'elu': elu,
    'tanh': jnp.tanh,
    'sigmoid': nn.sigmoid,
    'gelu': gelu,
    'scaled_tanh': scaled_tanh,
}


# ------------------------------------------------------------------------------------------------
# Convolution.

def conv(features: int, kernel_size: int | Sequence[int], *, ndim: int = 2,
         strides: int | Sequence[int] = 1, padding: Padding = 'SAME',
         dilation: int | Sequence[int] = 1, groups: int = 1, use_bias: bool = True,
         dtype: Any = jnp.float32, name: str | None = None, **kwargs) -> nn.Conv:
  """A convolution layer over `ndim` spatial axes (1, 2 or 3); the layer computes cross-correlation.

  groups > 1 splits the input and output channels into `groups` independent convolutions, each
  seeing in_channels / groups inputs: AlexNet's two GPU towers are groups=2. The kernel has shape
  [*kernel_size, in_channels // groups, features]. How it is computed (XLA's convolution, or a
  row GEMM for narrow 2-D convs on CPU) is `conv_backend.conv_general_dilated`'s choice; the
  numbers are the same either way.
  """
  kernel_size = _tuple(kernel_size, ndim)
  if padding == 'HALF':
    padding = tuple((k // 2, k // 2) for k in kernel_size)
  return nn.Conv(features, kernel_size, strides=_tuple(strides, ndim),
                 padding=_explicit_padding(padding, ndim), kernel_dilation=_tuple(dilation, ndim),
                 feature_group_count=groups, use_bias=use_bias, dtype=dtype, name=name,
                 conv_general_dilated=conv_backend.conv_general_dilated, **kwargs)


conv1d = functools.partial(conv, ndim=1)
conv2d = functools.partial(conv, ndim=2)
conv3d = functools.partial(conv, ndim=3)


def dense(features: int, *, dtype: Any = jnp.float32, name: str | None = None,
          **kwargs) -> nn.Dense:
  """A fully connected layer, x [..., K] -> x @ kernel [K, features] + bias: flax's Dense (the
  same parameters and names), its product computed by `conv_backend.dot_general` (oneDNN's matmul
  under the 'onednn' backend, XLA's elsewhere; the same numbers up to rounding)."""
  return nn.Dense(features, dtype=dtype, name=name, dot_general=conv_backend.dot_general,
                  **kwargs)


# ------------------------------------------------------------------------------------------------
# Pooling.

POOLS = ('max', 'avg', 'sum', 'min')

# Pooling layers are parameter-free Flax modules rather than bare functions, so that a model
# summary (convjax.analysis.summary) sees each one's window and stride and can track receptive fields.
# Called outside a module they are plain functions of x.


def _pool_padding(x: jnp.ndarray, window: tuple[int, ...], strides: tuple[int, ...],
                  padding: Padding) -> Padding:
  """Resolves 'CEIL' to explicit high-side padding; other forms as for convolution."""
  if padding != 'CEIL':
    return _explicit_padding(padding, len(window))
  pads = []
  for size, k, s in zip(x.shape[1:-1], window, strides):
    out = -(-max(size - k, 0) // s) + 1  # ceil((size - k) / s) + 1
    pads.append((0, max((out - 1) * s + k - size, 0)))
  return tuple(pads)


class Pool(nn.Module):
  """Pools each channel over windows of the spatial axes: [b, *spatial, c] -> [b, *pooled, c].

  kind: 'max', 'min', 'sum' or 'avg'. Padded positions never win a max or min; for 'avg' they
  count as zeros in the divisor (PyTorch's count_include_pad=True) except 'CEIL''s overhang,
  which is excluded as PyTorch excludes it. strides default to the window (non-overlapping).
  """
  kind: str
  window: int | Sequence[int]
  strides: int | Sequence[int] | None = None
  padding: Padding = 'VALID'

  def geometry(self, ndim: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(window, strides) per spatial axis."""
    window = _tuple(self.window, ndim)
    return window, window if self.strides is None else _tuple(self.strides, ndim)

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    window, strides = self.geometry(x.ndim - 2)
    pads = _pool_padding(x, window, strides, self.padding)
    if self.kind == 'max':
      return max_pool_taps(x, window, strides, pads)
    if self.kind == 'min':
      return -max_pool_taps(-x, window, strides, pads)
    if self.kind == 'sum':
      return nn.pool(x, 0., jax.lax.add, window, strides, pads)
    if self.kind == 'avg':
      return nn.avg_pool(x, window, strides, pads, count_include_pad=self.padding != 'CEIL')
    raise errors.InvalidValueError(
        f"unknown pooling '{self.kind}'; valid kinds are: {', '.join(POOLS)}")


def pool(x: jnp.ndarray, kind: str, window: int | Sequence[int],
         strides: int | Sequence[int] | None = None, padding: Padding = 'VALID') -> jnp.ndarray:
  """`Pool(kind, window, strides, padding)(x)`."""
  return Pool(kind, window, strides, padding)(x)


max_pool = functools.partial(pool, kind='max')
avg_pool = functools.partial(pool, kind='avg')
sum_pool = functools.partial(pool, kind='sum')
min_pool = functools.partial(pool, kind='min')


class GlobalPool(nn.Module):
  """Pools away every spatial axis: [b, *spatial, c] -> [b, c] (Network in Network's classifier)."""
  kind: str = 'avg'

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    reduce = {'max': jnp.max, 'min': jnp.min, 'sum': jnp.sum, 'avg': jnp.mean}
    if self.kind not in reduce:
      raise errors.InvalidValueError(
          f"unknown pooling '{self.kind}'; valid kinds are: {', '.join(POOLS)}")
    return reduce[self.kind](x, axis=tuple(range(1, x.ndim - 1)))


def global_pool(x: jnp.ndarray, kind: str = 'avg') -> jnp.ndarray:
  """`GlobalPool(kind)(x)`: [b, *spatial, c] -> [b, c]."""
  return GlobalPool(kind)(x)


def _window_taps(x: jnp.ndarray, window: tuple[int, ...], strides: tuple[int, ...],
                 pooled: tuple[int, ...]):
  """Yields (offset, x[:, o_1::s_1, ..., o_n::s_n, :] cut to [b, *pooled, c]) for every offset o
  inside the window, in row-major order: tap o holds each window's element at o."""
  for offset in itertools.product(*map(range, window)):
    limit = [o + (n - 1) * s + 1 for o, n, s in zip(offset, pooled, strides)]
    yield offset, jax.lax.slice(x, (0, *offset, 0), (x.shape[0], *limit, x.shape[-1]),
                                (1, *strides, 1))


def _pooled_shape(spatial, window, strides) -> tuple[int, ...]:
  """A VALID pool's output per axis: the convolution's output-size formula, unpadded."""
  return tuple(convolution_math.output_size(n, k, 0, s) for n, k, s in zip(spatial, window, strides))


def _wide(x: jnp.ndarray) -> jnp.ndarray:
  """x in float32 where it is narrower (bfloat16, float16), which holds its values exactly.

  The max pools compare and sum in it: XLA:CPU computes a bfloat16 chain of operations through a
  conversion at every step, and it fuses a pool's comparisons into the backward, once per tap.
  In bfloat16 that made a 3x3/2 pool's gradient 17 times slower than in float32."""
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _first_max(x: jnp.ndarray, window: tuple[int, ...], strides: tuple[int, ...]):
  """VALID max pool of already-padded x over the window's taps: [b, *spatial, c] -> the maximum
  and the index of the first tap (row-major) that holds it, both [b, *pooled, c]."""
  taps = (tap for _, tap in
          _window_taps(_wide(x), window, strides, _pooled_shape(x.shape[1:-1], window, strides)))
  best = next(taps)
  index = jnp.zeros(best.shape, jnp.int8 if math.prod(window) <= 127 else jnp.int32)
  for t, tap in enumerate(taps, start=1):
    better = tap > best  # Strictly: a tie keeps the earlier tap.
    best, index = jnp.where(better, tap, best), jnp.where(better, t, index)
  return best.astype(x.dtype), index


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool_taps(x: jnp.ndarray, window: tuple[int, ...], strides: tuple[int, ...],
                   spatial: tuple[int, ...]) -> jnp.ndarray:
  """VALID max pool of already-padded x, whose spatial shape is `spatial`: [b, *spatial, c] ->
  [b, *pooled, c]."""
  del spatial  # For the backward pass.
  return _first_max(x, window, strides)[0]


def _max_pool_taps_forward(x, window, strides, spatial):
  del spatial
  return _first_max(x, window, strides)  # (y, the winning taps as the residual)


def _max_pool_taps_backward(window, strides, spatial, index, g):
  """Each window's gradient goes to its first maximum in row-major order, as reduce_window's own
  gradient does (ties included): one elementwise select per tap, spread back onto x's grid by
  an interior-padded lax.pad (a strided scatter without a scatter).

  The forward saves which tap won, not x: XLA may recompute x (batch norm and ReLU, say) inside
  a backward fusion with other rounding than the forward's, and comparing that x with a saved
  maximum dropped most of VGG-11-BN's pool gradients.
  """
  pooled = g.shape[1:-1]
  if window == strides:  # Disjoint windows: interleave the taps' shares, no sums.
    return (_interleave([jnp.where(index == t, g, jnp.zeros_like(g))
                         for t in range(math.prod(window))], window, spatial),)
  wide = _wide(g)  # Summed in float32 (_wide).
  dx = jnp.zeros((g.shape[0], *spatial, g.shape[-1]), wide.dtype)
  for t, offset in enumerate(itertools.product(*map(range, window))):
    spread = [(o, size - o - (n - 1) * s - 1, s - 1)
              for o, size, n, s in zip(offset, spatial, pooled, strides)]
    dx = dx + jax.lax.pad(jnp.where(index == t, wide, 0), jnp.zeros((), wide.dtype),
                          [(0, 0, 0), *spread, (0, 0, 0)])
  return (dx.astype(g.dtype),)


_max_pool_taps.defvjp(_max_pool_taps_forward, _max_pool_taps_backward)


def _interleave(taps: list[jnp.ndarray], window: tuple[int, ...], spatial: tuple[int, ...]):
  """The inverse of `_window_taps` for disjoint windows: prod(window) maps [b, *pooled, c] (row-major
  over the window) -> [b, *spatial, c], zeros where no window reaches (VALID's dropped edge)."""
  b, *pooled, c = taps[0].shape
  n = len(window)
  # [*window, b, *pooled, c] -> [b, pooled_1, window_1, ..., pooled_n, window_n, c].
  stacked = jnp.stack(taps).reshape(*window, b, *pooled, c)
  order = [n] + [axis for i in range(n) for axis in (n + 1 + i, i)] + [2 * n + 1]
  dx = stacked.transpose(order).reshape(b, *(p * k for p, k in zip(pooled, window)), c)
  edge = [(0, size - p * k) for size, p, k in zip(spatial, pooled, window)]
  return jnp.pad(dx, [(0, 0), *edge, (0, 0)]) if any(high for _, high in edge) else dx


def max_pool_taps(x: jnp.ndarray, window: tuple[int, ...], strides: tuple[int, ...],
                  padding: Padding) -> jnp.ndarray:
  """`nn.max_pool(x, window, strides, padding)`, with the same values and gradients (ties go to the
  first maximum), computed from the window's strided taps: [b, *spatial, c] -> [b, *pooled, c].

  Why: XLA:CPU differentiates reduce_window's max through a variadic reduce_window that carries
  an int32 index per spatial axis, built from full-size iotas: a large share of AlexNet's train
  step (PERFORMANCE.md). Here the forward is one elementwise loop over the
  prod(window) strided slices that also notes the winning slice, and the backward one loop that
  routes each gradient by it; XLA fuses both with their neighbours.
  """
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(x.shape[1:-1], window, strides, padding)
  if any(low or high for low, high in padding):  # Padded positions never win: -inf.
    pads = [(0, 0, 0), *((low, high, 0) for low, high in padding), (0, 0, 0)]
    x = jax.lax.pad(x, jnp.array(-jnp.inf, x.dtype), pads)
  pooled = _pooled_shape(x.shape[1:-1], window, strides)
  if min(pooled) <= 0:  # A window larger than the input: an empty map, as reduce_window gives.
    return jnp.zeros((x.shape[0], *(max(n, 0) for n in pooled), x.shape[-1]), x.dtype)
  return _max_pool_taps(x, tuple(window), tuple(strides), x.shape[1:-1])


def _window_corners(x: jnp.ndarray) -> list[jnp.ndarray]:
  """The four [b, h / 2, w / 2, c] corners of every 2x2 window of even-sized x, row-major."""
  return [x[:, i::2, j::2, :] for i in (0, 1) for j in (0, 1)]


@jax.custom_vjp
def _max_pool_2x2_even(x: jnp.ndarray) -> jnp.ndarray:
  """[b, h, w, c] with even h, w -> [b, h / 2, w / 2, c]: the max of the four window corners."""
  a, b, c, d = _window_corners(_wide(x))
  return jnp.maximum(jnp.maximum(a, b), jnp.maximum(c, d)).astype(x.dtype)


def _max_pool_2x2_forward(x):
  y = _max_pool_2x2_even(x)
  return y, (x, y)


def _max_pool_2x2_backward(residuals, g):
  """Each window's gradient goes to its first maximum in row-major order, as reduce_window's
  select-and-scatter does, by four elementwise selects instead of a scatter.

  This compares x with the saved maximum, which is faster on LeNet-5's step than
  `max_pool_taps`'s saved index (PERFORMANCE.md), but is only right where XLA does not recompute x inside the
  backward pass with other rounding: after a convolution and ReLU, as in LeNet-5, not after
  batch norm (see `_max_pool_taps_backward`)."""
  x, y = residuals
  y = _wide(y)
  taken = jnp.zeros(y.shape, bool)
  grads = []
  for corner in _window_corners(_wide(x)):
    first = (corner == y) & ~taken
    taken = taken | first
    grads.append(jnp.where(first, g, jnp.zeros_like(g)))
  b, h2, w2, c = y.shape
  # [4 corners (i, j)] -> [b, h2, i, w2, j, c] -> [b, h, w, c].
  dx = jnp.stack(grads, axis=0).reshape(2, 2, b, h2, w2, c).transpose(2, 3, 0, 4, 1, 5)
  return (dx.reshape(x.shape),)


_max_pool_2x2_even.defvjp(_max_pool_2x2_forward, _max_pool_2x2_backward)


class MaxPool2x2(nn.Module):
  """2x2 max pooling with stride 2 and VALID padding: [b, h, w, c] -> [b, h // 2, w // 2, c].

  Same values and gradients as `nn.max_pool(x, (2, 2), (2, 2))`, ties included, computed from
  the four strided corners of the windows, LeNet-5's pool. XLA:CPU turns reduce_window's
  gradient into a slow variadic reduce_window with index iotas; here forward and backward are
  elementwise loops that fuse with their neighbours. For pools after batch norm use `max_pool`.
  """

  def geometry(self, ndim: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return (2,) * ndim, (2,) * ndim

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    b, h, w, c = x.shape
    return _max_pool_2x2_even(x[:, :h - h % 2, :w - w % 2, :])  # VALID: drop an odd last row/col.


def max_pool_2x2(x: jnp.ndarray) -> jnp.ndarray:
  """`MaxPool2x2()(x)`."""
  return MaxPool2x2()(x)


def reference_max_pool_2x2(x: jnp.ndarray) -> jnp.ndarray:
  """Flax's reduce_window max pool, the definition `max_pool_2x2` must match."""
  return nn.max_pool(x, (2, 2), strides=(2, 2), padding='VALID')


# ------------------------------------------------------------------------------------------------
# Normalisation and regularisation.

def local_response_norm(x: jnp.ndarray, size: int = 5, k: float = 2.0, alpha: float = 1e-4,
                        beta: float = 0.75) -> jnp.ndarray:
  """AlexNet's local response normalisation across channels (Krizhevsky et al. 2012, sec. 3.3).

    b[..., i] = a[..., i] / (k + alpha * sum_{j = i - size//2}^{i + size//2} a[..., j]^2) ** beta

  with the sum clipped to existing channels. This is the paper's formula: Caffe and PyTorch
  divide alpha by `size`, so their alpha=1e-4 is this function's alpha=2e-5.
  x: [batch, *spatial, channels] -> same shape.
  """
  squares = jnp.square(x.astype(jnp.float32))
  half = size // 2
  window_sum = jax.lax.reduce_window(
      squares, 0., jax.lax.add, (1,) * (x.ndim - 1) + (size,), (1,) * x.ndim,
      ((0, 0),) * (x.ndim - 1) + ((half, size - 1 - half),))
  return (x / (k + alpha * window_sum) ** beta).astype(x.dtype)


class BatchNorm(nn.BatchNorm):
  """flax's batch norm (same parameters, statistics and names), with the momentum 0.9 and epsilon
  1e-5 the reference (PyTorch/Caffe) networks train with: flax's default momentum of 0.99 adapts
  too slowly for short runs.

  In training, where convolutions take the 'onednn' backend (conv_backend), a float32 (or, where
  oneDNN has the kernels, bfloat16) channels-last input is normalised by oneDNN
  (onednn_norm.batch_norm: one fused pass each way where XLA makes several); elsewhere flax
  computes it. Both give the same numbers up to rounding.
  relu=True returns relu(batch norm(x)), in oneDNN's same pass where oneDNN normalises (see
  `norm_act`, which the models call).
  """
  momentum: float = 0.9
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x, use_running_average: bool | None = None, *, mask=None,
               relu: bool = False):
    train = not nn.merge_param('use_running_average', self.use_running_average,
                               use_running_average)
    if not (train and mask is None and self._onednn_takes(x)) or self.is_initializing():
      y = super().__call__(x, use_running_average, mask=mask)
      return nn.relu(y) if relu else y
    channels = (x.shape[-1],)
    ra_mean = self.variable('batch_stats', 'mean', lambda s: jnp.zeros(s, jnp.float32), channels)
    ra_var = self.variable('batch_stats', 'var', lambda s: jnp.ones(s, jnp.float32), channels)
    scale = self.param('scale', self.scale_init, channels, self.param_dtype)
    bias = self.param('bias', self.bias_init, channels, self.param_dtype)
    y, mean, var = onednn_norm.batch_norm(x, scale, bias, self.epsilon,
                                          conv_backend.onednn_threads(), relu)
    ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
    ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    return y

  def _onednn_takes(self, x) -> bool:
    """Whether this layer's training pass can go to oneDNN: the backend is on, and the layer is
    the plain per-device, last-axis, scaled and shifted kind, with float32 parameters, whose
    output has x's dtype (flax's: the layer's dtype, else x's and the parameters' promoted)."""
    output = self.dtype or jnp.promote_types(x.dtype, self.param_dtype)
    plain = (self.axis in (-1, x.ndim - 1) and self.axis_name is None and self.use_scale
             and self.use_bias and self.param_dtype == jnp.float32 and output == x.dtype)
    return (plain and conv_backend.backend_name() == 'onednn' and onednn_norm.supports(x))


def batch_norm(train: bool, dtype: Any = jnp.float32, **kwargs) -> nn.BatchNorm:
  """Batch norm over [batch, *spatial] per channel; running averages in 'batch_stats'."""
  return BatchNorm(use_running_average=not train, dtype=dtype, **kwargs)


def norm_act(norm: nn.Module, activation: Callable | None, x: jnp.ndarray) -> jnp.ndarray:
  """activation(norm(x)) (None: no activation): one pass where norm is a `BatchNorm` that
  oneDNN runs and the activation is ReLU, two otherwise."""
  if activation is nn.relu and isinstance(norm, BatchNorm) and onednn_norm.FUSE_RELU:
    return norm(x, relu=True)
  y = norm(x)
  return activation(y) if activation is not None else y


class GroupNorm(nn.Module):
  """Group norm (Wu & He 2018) with 32 groups, or gcd(32, channels) where 32 does not divide."""
  scale_init: Callable = nn.initializers.ones
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    groups = int(np.gcd(32, x.shape[-1]))
    return nn.GroupNorm(num_groups=groups, scale_init=self.scale_init, dtype=self.dtype)(x)


class Identity(nn.Module):
  """No normalisation; takes (and ignores) a norm layer's arguments."""
  scale_init: Callable | None = None
  dtype: Any = None

  def __call__(self, x):
    return x


NORMS = ('batch', 'group', 'none')


def normalization(kind: str, train: bool, dtype: Any = jnp.float32) -> Callable[..., nn.Module]:
  """A factory of normalisation layers, so a model's normalisation is one constructor field.

  kind: 'batch' (running averages in 'batch_stats'), 'group' (batch-independent) or 'none'.
  The factory takes the layer's keyword arguments, e.g. name= or scale_init=.
  """
  if kind == 'batch':
    return functools.partial(batch_norm, train, dtype)
  if kind == 'group':
    return functools.partial(GroupNorm, dtype=dtype)
  if kind == 'none':
    return Identity
  raise errors.InvalidValueError(
      f"unknown normalization '{kind}'; valid kinds are: {', '.join(NORMS)}")


def dropout(x: jnp.ndarray, rate: float, train: bool) -> jnp.ndarray:
  """Inverted dropout drawing from the 'dropout' rng in training, identity in evaluation."""
  return nn.Dropout(rate, deterministic=not train)(x) if rate > 0 else x


def drop_path(x: jnp.ndarray, rate: float, train: bool) -> jnp.ndarray:
  """Stochastic depth (Huang et al. 2016) on a residual branch x [b, ...]: in training each
  example's whole branch is zeroed with probability `rate`, and kept ones scaled by
  1 / (1 - rate), drawing from the 'dropout' rng; identity in evaluation or at rate 0."""
  if not rate:
    return x
  return nn.Dropout(rate, broadcast_dims=tuple(range(1, x.ndim)), deterministic=not train)(x)


def depth_rates(rate: float, num_blocks: int) -> list[float]:
  """Stochastic depth's linear decay rule: block l = 1..L is dropped with rate * l / L, so the
  input's block is nearly always kept and the last one is dropped at `rate`."""
  return [rate * (index + 1) / num_blocks for index in range(num_blocks)]


def flatten(x: jnp.ndarray) -> jnp.ndarray:
  """[batch, ...] -> [batch, features]."""
  return x.reshape((x.shape[0], int(np.prod(x.shape[1:]))))

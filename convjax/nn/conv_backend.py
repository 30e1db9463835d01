"""How a 2-D convolution layer is computed: XLA's convolution, or one matrix product per image row.

A convolution is a matrix product with tied weights (convjax.nn.convolution_math.conv_matrix). Lowering
only the *width* axis into a matrix gives a product that is small enough to build and big enough
to run well: output row ho of every image is

  y[b, ho, :, :] = concat_i x_pad[b, s*ho + i, :, :]  @  T          (i = 0 .. kh - 1)
                   [kh * Wp * C]                          [kh * Wp * C, Wo * O]

where T is block-banded (Toeplitz along the width): T[i, p, c, q, o] = kernel[i, p - s*q, c, o]
when 0 <= p - s*q < kw, else 0. Every output row of the batch is one row of a single GEMM
[B * Ho, kh * Wp * C] @ [kh * Wp * C, Wo * O]. The zeros of T cost Wp / kw times the direct
multiply-adds, but a GEMM of this shape runs close to the matmul peak, while XLA:CPU's generic
convolution reaches a few GFLOP/s on the narrow channel counts of early layers (LeNet-5's 1 -> 6
conv: 6 GFLOP/s forward). Gradients need nothing special: autodiff of a matmul is two matmuls,
and T's gradient folds back onto the kernel through the fixed 0/1 band.

`conv_general_dilated` is what every convjax conv layer calls (layers.conv). On CPU with the
'onednn' backend (convjax.nn.onednn, the default where its extension is built) every 2-D NHWC
convolution runs as oneDNN primitives, forward and both gradients. Otherwise it takes the row
GEMM where `prefers_rows` says so, and lax.conv_general_dilated everywhere else. `dot_general`
is what every dense layer calls (layers.dense): under the same backend a dense layer's product
goes to oneDNN's matmul (convjax.nn.onednn_dense).

The backend is chosen once per process, before anything is traced (`use_backend`, called with
config.conv_backend when a run is assembled): a jitted function keeps the backend it was traced
with.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from convjax import errors
from convjax.nn import onednn, onednn_dense

# Flax's dimension numbers for 2-D channels-last convolutions: NHWC inputs, HWIO kernels.
NHWC = lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1),
                                out_spec=(0, 3, 1, 2))
# And for 1-D: NWC inputs, WIO kernels.
NWC = lax.ConvDimensionNumbers(lhs_spec=(0, 2, 1), rhs_spec=(2, 1, 0), out_spec=(0, 2, 1))
# And for 3-D: NDHWC inputs (D: time, or depth), DHWIO kernels.
NDHWC = lax.ConvDimensionNumbers(lhs_spec=(0, 4, 1, 2, 3), rhs_spec=(4, 3, 0, 1, 2),
                                 out_spec=(0, 4, 1, 2, 3))
# On CPU, the row GEMM is used while in_channels * out_channels is at most ROWS_MAX_CHANNELS and
# T's zeros cost at most ROWS_MAX_REDUNDANCY times the direct multiply-adds (Wp / kw): the row GEMM
# wins on convolutions with few channels, such as LeNet-5's, and loses on wider ones, such as
# ResNet-20's (the timings that set both limits are in PERFORMANCE.md).
ROWS_MAX_CHANNELS = 96
ROWS_MAX_REDUNDANCY = 8


CONV_BACKENDS = ('auto', 'xla', 'onednn')
_backend = {'name': 'auto', 'threads': 0, 'devices': None}
# Grouped and depthwise convolutions go to oneDNN with the rest; False leaves them to XLA (to
# compare the two: benchmarks set it before tracing).
ONEDNN_GROUPED = True


class BackendError(errors.UserError, ValueError):
  """conv_backend names a backend that this machine cannot run."""


def use_backend(name: str, devices: int | None = None) -> str:
  """Sets how convolutions are computed from now on in this process; returns the resolved name.

  name: 'auto' (oneDNN on CPU when its extension is built, else XLA), 'xla' or 'onednn'.
  devices: how many devices will run side by side; each oneDNN call gets cores // devices
  threads, so that together they never ask for more threads than cores.
  """
  if name not in CONV_BACKENDS:
    raise BackendError(f"conv_backend must be one of {', '.join(CONV_BACKENDS)}, got '{name}'")
  if name == 'onednn' and jax.default_backend() != 'cpu':
    raise BackendError(f"conv_backend='onednn' runs on CPU, and this run's backend is "
                       f"{jax.default_backend()}")
  if name == 'onednn' and not onednn.available():
    raise BackendError(f"conv_backend='onednn' needs convjax's oneDNN extension, and "
                       f'{onednn.why_unavailable()}')
  cores = len(os.sched_getaffinity(0))
  _backend.update(name=name, threads=max(1, cores // devices) if devices else 0, devices=devices)
  return backend_name()


def backend_setting() -> tuple[str, int | None]:
  """The (name, devices) that use_backend was last given, to restore it after a change."""
  return _backend['name'], _backend['devices']


def backend_name(dtype=jnp.float32) -> str:
  """'onednn' or 'xla': what 2-D convolutions in `dtype` on this process's default backend use
  now."""
  wanted = _backend['name']
  if wanted == 'xla' or jax.default_backend() != 'cpu' or not onednn.available():
    return 'xla'
  return 'onednn' if onednn.convolves(dtype) else 'xla'


def backend_note(dtype) -> str:
  """Why convolutions in `dtype` leave oneDNN for XLA where float32 ones would not; else ''."""
  if backend_name(jnp.float32) == backend_name(dtype):
    return ''
  return (f"this processor's oneDNN has no {jnp.dtype(dtype).name} convolutions, so XLA computes "
          'them, more slowly than oneDNN computes float32 (--config.half_precision=False is '
          'faster here)')


def onednn_threads() -> int:
  """OpenMP threads of each oneDNN call: use_backend's share of the cores per device."""
  return _backend['threads'] or onednn.threads_per_call()


def _pairs(padding, in_shape, kernel_shape, strides) -> list[tuple[int, int]]:
  """'SAME', 'VALID' or explicit (low, high) pairs -> explicit pairs for the spatial axes."""
  if isinstance(padding, str):
    return lax.padtype_to_pads(in_shape, kernel_shape, strides, padding)
  return [tuple(p) for p in padding]


def band_matrix(kernel: jnp.ndarray, padded_width: int, out_width: int,
                stride: int) -> jnp.ndarray:
  """T of the module docstring: kernel [kh, kw, C, O] -> [kh * padded_width * C, out_width * O].

  T[i, p, c, q, o] = kernel[i, p - stride * q, c, o] inside the band, 0 outside it.
  """
  kh, kw, c, o = kernel.shape
  band = np.zeros((padded_width, out_width, kw), np.float32)  # band[p, q, j] = [p == s*q + j]
  for q in range(out_width):
    band[stride * q + np.arange(kw), q, np.arange(kw)] = 1
  matrix = jnp.einsum('pqj,ijco->ipcqo', band.astype(kernel.dtype), kernel)
  return matrix.reshape(kh * padded_width * c, out_width * o)


def conv2d_rows(x: jnp.ndarray, kernel: jnp.ndarray, strides=(1, 1), padding='VALID',
                precision=None) -> jnp.ndarray:
  """Cross-correlation of x [B, H, W, C] with kernel [kh, kw, C, O] -> [B, Ho, Wo, O] by one
  GEMM over output rows; the same numbers as lax.conv_general_dilated up to float rounding."""
  kh, kw, c, o = kernel.shape
  (pt, pb), (pl, pr) = _pairs(padding, x.shape[1:3], (kh, kw), strides)
  x = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  b, hp, wp, _ = x.shape
  sh, sw = strides
  ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
  # rows[b, ho, i] = padded input row sh * ho + i: the kh rows output row ho sees.
  rows = jnp.stack([x[:, i:i + sh * (ho - 1) + 1:sh] for i in range(kh)], axis=2)
  y = jnp.dot(rows.reshape(b * ho, kh * wp * c), band_matrix(kernel, wp, wo, sw),
              precision=precision)
  return y.reshape(b, ho, wo, o)


def _dilated(kernel_size, dilation) -> tuple[int, ...]:
  """The extent a dilated kernel covers: d * (k - 1) + 1 per axis (what 'SAME' pads for)."""
  return tuple(d * (k - 1) + 1 for k, d in zip(kernel_size, dilation or (1,) * len(kernel_size)))


def materialize(x: jnp.ndarray) -> jnp.ndarray:
  """x, stored once. XLA:CPU otherwise recomputes x's whole chain of elementwise producers in
  every consumer fusion, including the transposes feeding weight-gradient convolutions."""
  return lax.cond(x.ravel()[0] > -jnp.inf, lambda x: x, lambda x: x * 1.0, x)


def prefers_rows(kernel_shape, padded_width: int, backend: str | None = None) -> bool:
  """The rule `conv_general_dilated` follows for a kernel [kh, kw, C, O]: row GEMMs for narrow
  convs whose band is not too sparse, on CPU only (GPU and TPU convolutions are fast anyway)."""
  _, kw, c, o = kernel_shape
  backend = backend or jax.default_backend()
  return (backend == 'cpu' and c * o <= ROWS_MAX_CHANNELS
          and padded_width <= ROWS_MAX_REDUNDANCY * kw)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, precision=None, **kwargs):
  """lax.conv_general_dilated's signature (what flax.linen.Conv calls). With the 'onednn'
  backend, every 2-D NHWC convolution goes to `onednn.conv2d`; otherwise undilated, ungrouped
  ones that `prefers_rows` go to `conv2d_rows`, and the rest to lax. A 1-D NWC convolution is
  the 2-D one of an image one row high, and takes the same routes (`conv1d_as_2d`); a 3-D NDHWC
  one is a sum of 2-D ones over its temporal taps (`conv3d_as_2d`)."""
  if (rhs.ndim == 3 and dimension_numbers == NWC and not kwargs
      and all(d == 1 for d in lhs_dilation or (1,))):
    return conv1d_as_2d(lhs, rhs, window_strides, padding, rhs_dilation, feature_group_count,
                        precision)
  if (rhs.ndim == 5 and dimension_numbers == NDHWC and not kwargs
      and all(d == 1 for d in lhs_dilation or (1,))):
    return conv3d_as_2d(lhs, rhs, window_strides, padding, rhs_dilation, feature_group_count,
                        precision)
  nhwc = (rhs.ndim == 4 and dimension_numbers == NHWC and not kwargs
          and all(d == 1 for d in lhs_dilation or (1,)))
  if (nhwc and backend_name() == 'onednn' and lhs.dtype == rhs.dtype
      and (feature_group_count == 1 or ONEDNN_GROUPED)
      and onednn.supports(lhs.shape, rhs.shape, lhs.dtype)):
    pads = _pairs(padding, lhs.shape[1:3], _dilated(rhs.shape[:2], rhs_dilation), window_strides)
    return onednn.conv2d(lhs, rhs, tuple(window_strides), tuple(map(tuple, pads)),
                         tuple(rhs_dilation or (1, 1)), feature_group_count, onednn_threads())
  plain = (nhwc and feature_group_count == 1 and all(d == 1 for d in rhs_dilation or (1,)))
  if plain:
    pads = _pairs(padding, lhs.shape[1:3], rhs.shape[:2], window_strides)
    if prefers_rows(rhs.shape, lhs.shape[2] + sum(pads[1])):
      return conv2d_rows(lhs, rhs, tuple(window_strides), pads, precision)
  if jax.default_backend() == 'cpu':
    lhs = materialize(lhs)
  return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
                                  rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
                                  feature_group_count=feature_group_count, precision=precision,
                                  **kwargs)


def conv3d_as_2d(lhs, rhs, strides, padding, dilation, groups: int, precision=None):
  """A 3-D convolution, lhs [b, t, h, w, c] and rhs [kt, kh, kw, c // groups, o] ->
  [b, t', h', w', o], computed as the sum over the kt temporal taps of 2-D convolutions:

    out[:, s] = sum_k conv2d(x[:, s * stride_t + k * dilation_t], rhs[k])   (x zero-padded in t)

  each one a 2-D convolution of all b * t' frames at once. The sums are the 3-D convolution's, and
  the 2-D routes (oneDNN where built) serve them; XLA:CPU's own 3-D convolution is far slower.
  """
  dilation = tuple(dilation or (1, 1, 1))
  pads = _pairs(padding, lhs.shape[1:4], _dilated(rhs.shape[:3], dilation), strides)
  x = jnp.pad(lhs, ((0, 0), pads[0], (0, 0), (0, 0), (0, 0)))
  taps, stride, step = rhs.shape[0], strides[0], dilation[0]
  frames_out = (x.shape[1] - (taps - 1) * step - 1) // stride + 1
  out = 0
  for k in range(taps):
    frames = x[:, k * step:k * step + stride * (frames_out - 1) + 1:stride]
    out = out + conv_general_dilated(
        frames.reshape(-1, *frames.shape[2:]), rhs[k], tuple(strides[1:]), pads[1:],
        rhs_dilation=dilation[1:], dimension_numbers=NHWC, feature_group_count=groups,
        precision=precision)
  return out.reshape(lhs.shape[0], frames_out, *out.shape[1:])


def conv1d_as_2d(lhs, rhs, strides, padding, dilation, groups: int, precision=None):
  """A 1-D convolution, lhs [b, w, c] and rhs [k, c // groups, o] -> [b, w', o], computed as the
  2-D convolution of [b, 1, w, c] with [1, k, c // groups, o]: the same sums, and oneDNN's 2-D
  kernels serve it."""
  pads = _pairs(padding, lhs.shape[1:2], _dilated(rhs.shape[:1], dilation), strides)
  out = conv_general_dilated(lhs[:, None], rhs[None], (1, *strides), ((0, 0), *pads),
                             rhs_dilation=(1, *(dilation or (1,))), dimension_numbers=NHWC,
                             feature_group_count=groups, precision=precision)
  return out[:, 0]


def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None,
                **kwargs):
  """lax.dot_general's signature (what flax.linen.Dense calls). With the 'onednn' backend, a
  dense layer's product, lhs [..., K] contracted with rhs [K, O] -> [..., O] in one dtype, goes to
  `onednn_dense.dense` (the leading axes flattened into rows); everything else to lax."""
  (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
  dense = (rhs.ndim == 2 and tuple(lhs_contract) == (lhs.ndim - 1,) and tuple(rhs_contract) == (0,)
           and not lhs_batch and not rhs_batch and not kwargs
           and preferred_element_type in (None, lhs.dtype))
  if dense and backend_name() == 'onednn':
    rows = lhs.reshape(-1, lhs.shape[-1])
    if onednn_dense.supports(rows, rhs):
      y = onednn_dense.dense(rows, rhs, onednn_threads())
      return y.reshape(*lhs.shape[:-1], rhs.shape[1])
  return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                         preferred_element_type=preferred_element_type, **kwargs)

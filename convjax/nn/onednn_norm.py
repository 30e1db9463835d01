"""Batch normalisation in training through oneDNN on CPU, with its gradient (a custom VJP).

For x [..., C] (channels last), per channel c over every other position i (M of them):

  mean[c] = sum_i x[i, c] / M,   var[c] = sum_i (x[i, c] - mean[c])^2 / M   (biased, as flax's)
  y[i, c] = (x[i, c] - mean[c]) / sqrt(var[c] + epsilon) * scale[c] + shift[c]

and with relu=True max(y, 0) in the same pass (oneDNN's fuse_norm_relu), where XLA would read
and write the activations once more for the ReLU alone. x (and y, dy, dx) is float32, or bfloat16
where this processor's oneDNN has those kernels; the statistics, scale and shift stay float32.

The backward pass is oneDNN's too: dx through the batch statistics (each x moves the mean and
variance every other output is normalised with), dscale = sum_i dy * x_hat, dshift = sum_i dy.
XLA computes the same as several reductions and element-wise passes over x and dy; oneDNN makes
one fused pass for the statistics and one for the output, forward and backward alike.

The handlers live in the extension beside the convolutions (native/onednn_norm.cc), loaded and
registered by `onednn`; `layers.BatchNorm` calls `batch_norm` where the 'onednn' backend is on.
"""
import ctypes
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax import custom_derivatives

from convjax.nn import onednn


# CONVJAX_ONEDNN_NORM=0 leaves batch norm to XLA under the 'onednn' backend (to compare the two).
ENABLED = os.environ.get('CONVJAX_ONEDNN_NORM', '1') != '0'
# CONVJAX_ONEDNN_NORM_RELU=0 keeps the ReLU after it a pass of XLA's (to measure the fusion).
FUSE_RELU = os.environ.get('CONVJAX_ONEDNN_NORM_RELU', '1') != '0'


def supports(x) -> bool:
  """Whether `batch_norm` takes x: float32, or bfloat16 where this processor's oneDNN has
  bfloat16 kernels, with at least one position and channel (and CONVJAX_ONEDNN_NORM is not 0)."""
  return (ENABLED and x.dtype in (jnp.float32, jnp.bfloat16) and x.ndim >= 2 and x.size > 0
          and onednn.has_kernels('ConvjaxNormSupports', x.dtype == jnp.bfloat16))


def overrun_bytes(rows: int, channels: int, backward: bool, epsilon: float = 1e-5,
                  threads: int = 1, relu: bool = False, dtype=jnp.float32) -> int:
  """Bytes oneDNN writes outside its buffers in one batch norm call on [rows, channels] of dtype
  (as onednn.overrun_bytes does for convolutions; relu: the forward's fused ReLU): 0 when it
  stays inside, -1 when it refuses."""
  library = onednn.library()
  library.ConvjaxNormOverrunBytes.restype = ctypes.c_int64
  return library.ConvjaxNormOverrunBytes(
      ctypes.c_int64(rows), ctypes.c_int64(channels), ctypes.c_float(epsilon),
      ctypes.c_int64(threads), ctypes.c_int64(int(backward)), ctypes.c_int64(int(relu)),
      ctypes.c_int64(int(jnp.dtype(dtype) == jnp.bfloat16)))


def _attributes(epsilon: float, threads: int) -> dict:
  onednn.library()  # Registers the targets, or says why it cannot.
  return dict(epsilon=np.float32(epsilon), threads=np.int64(threads))


def _forward(x, scale, shift, epsilon, threads, relu):
  channel = jax.ShapeDtypeStruct(scale.shape, jnp.float32)
  return jax.ffi.ffi_call('convjax_batch_norm_forward',
                          (jax.ShapeDtypeStruct(x.shape, x.dtype), channel, channel),
                          vmap_method='sequential')(x, scale, shift, relu=np.int64(relu),
                                                    **_attributes(epsilon, threads))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def batch_norm(x, scale, shift, epsilon: float = 1e-5, threads: int = 1, relu: bool = False):
  """(y, mean, var): x [..., C] normalised per channel with its batch statistics, scaled and
  shifted (scale, shift [C]), then ReLU'd with relu; mean and var [C] are those statistics
  (var biased)."""
  return _forward(x, scale, shift, epsilon, threads, relu)


def _batch_norm_fwd(x, scale, shift, epsilon, threads, relu):
  y, mean, var = _forward(x.value, scale.value, shift.value, epsilon, threads, relu)
  # The ReLU's gradient reads y (kept alive anyway as the next layer's input).
  return (y, mean, var), (x.value, scale.value, mean, var, y if relu else None)


def _batch_norm_bwd(epsilon, threads, relu, residuals, cotangents):
  x, scale, mean, var, y = residuals
  dy, dmean, dvar = cotangents
  if isinstance(dy, custom_derivatives.SymbolicZero):
    dy = jnp.zeros_like(x)
  elif relu:
    dy = jnp.where(y > 0, dy, 0)
  channel = jax.ShapeDtypeStruct(scale.shape, jnp.float32)
  dx, dscale, dshift = jax.ffi.ffi_call(
      'convjax_batch_norm_backward', (jax.ShapeDtypeStruct(x.shape, x.dtype), channel, channel),
      vmap_method='sequential')(x, dy, scale, mean, var, **_attributes(epsilon, threads))
  # A training step only feeds the statistics to the running averages, outside the loss, so
  # their cotangents are (symbolic) zeros and cost nothing; otherwise d mean / dx = 1 / M and
  # d var / dx = 2 (x - mean) / M.
  count = x.size // x.shape[-1]
  if not isinstance(dmean, custom_derivatives.SymbolicZero):
    dx = dx + dmean / count
  if not isinstance(dvar, custom_derivatives.SymbolicZero):
    dx = dx + dvar * 2 * (x - mean) / count
  return dx.astype(x.dtype), dscale, dshift  # The float32 statistics' terms promote dx.


batch_norm.defvjp(_batch_norm_fwd, _batch_norm_bwd, symbolic_zeros=True)

"""2-D convolutions through oneDNN on CPU: convjax's own C++ extension, called as XLA FFI custom calls.

XLA:CPU already hands some forward convolutions to oneDNN, but never the input gradient: JAX's
transpose rule writes backward-data as a convolution with a reversed kernel and dilated input,
which XLA's oneDNN rewriter skips. Here all three (forward, backward-data, backward-weights) are
oneDNN primitives, tied together by a custom VJP:

  y  = conv(x, k)                    x [N, H, W, C], k [KH, KW, C / G, O] -> y [N, OH, OW, O]
  dx = conv_backward_data(dy, k)     (the transposed convolution: dy scattered back through k)
  dk = conv_backward_weights(x, dy)  (dk[i, j, c, o] = sum over n, h, w of x[n, s*h + i, ...] dy)

The extension (convjax/nn/native/onednn_conv.cc) is compiled by `.ci/setup` (python -m
convjax.nn.native.build). Where it is missing, `available()` is False, `why_unavailable()` says why,
and convjax computes convolutions with XLA.

Threads: each call runs oneDNN on `threads` OpenMP threads, cores / XLA CPU devices, because the
devices run their programs side by side and together must not ask for more threads than cores.
"""
import ctypes
import functools
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from convjax.nn import convolution_math

LIBRARY = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'native', '_onednn.so')
_TARGETS = {'convjax_conv_forward': 'ConvjaxConvForward',
            'convjax_conv_backward_data': 'ConvjaxConvBackwardData',
            'convjax_conv_backward_weights': 'ConvjaxConvBackwardWeights',
            'convjax_batch_norm_forward': 'ConvjaxBatchNormForward',
            'convjax_batch_norm_backward': 'ConvjaxBatchNormBackward',
            'convjax_gelu_forward': 'ConvjaxGeluForward',
            'convjax_gelu_backward': 'ConvjaxGeluBackward',
            'convjax_matmul': 'ConvjaxMatmul',
            'convjax_dense_backward': 'ConvjaxDenseBackward',
            'convjax_sgd_momentum': 'ConvjaxSgdMomentum', 'convjax_adamw': 'ConvjaxAdamw'}
# Which layouts oneDNN may choose: 0 none (XLA's NHWC / HWIO throughout), 1 the weights',
# 2 the weights' and the activations' (each costing a reorder per call).
LAYOUT = int(os.environ.get('CONVJAX_ONEDNN_LAYOUT', '1'))


@functools.cache
def _load() -> tuple[ctypes.CDLL | None, str]:
  """(library, '') once its targets are registered with XLA, or (None, the reason it is not)."""
  if not os.path.exists(LIBRARY):
    return None, f'{LIBRARY} is not built (run: bash .ci/setup)'
  try:
    loaded = ctypes.cdll.LoadLibrary(LIBRARY)
    handlers = {target: getattr(loaded, symbol) for target, symbol in _TARGETS.items()}
  except (OSError, AttributeError) as error:
    return None, f'{LIBRARY} does not load: {error}'
  for target, handler in handlers.items():
    jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(handler), platform='cpu')
  loaded.ConvjaxOnednnVersion.restype = ctypes.c_char_p
  loaded.ConvjaxConvolvesBfloat16.argtypes = [ctypes.c_int64]
  return loaded, ''


def available() -> bool:
  """Whether the extension is built and loads."""
  return _load()[0] is not None


def why_unavailable() -> str:
  """'' when available; otherwise one sentence."""
  return _load()[1]


def library() -> ctypes.CDLL:
  """The loaded extension, its XLA targets registered; RuntimeError saying why where it is not."""
  loaded, why = _load()
  if loaded is None:
    raise RuntimeError(f'convjax.nn.onednn is unavailable: {why}')
  return loaded


@functools.cache
def has_kernels(probe: str, bfloat16: bool) -> bool:
  """Whether the extension is available and its probe `probe` (a C function of the extension,
  int64 bf16 -> 1 or 0, such as 'ConvjaxNormSupports') builds its primitives here for bfloat16 (or
  float32): where this processor's oneDNN has no such kernels, XLA computes the operation."""
  loaded = _load()[0]
  return bool(loaded and getattr(loaded, probe)(ctypes.c_int64(bfloat16)))


def version() -> str:
  """oneDNN's version, as the extension was built against it ('' when unavailable)."""
  loaded = _load()[0]
  return loaded.ConvjaxOnednnVersion().decode() if loaded else ''


def threads_per_call() -> int:
  """Cores this process may use, shared out over its CPU devices (at least 1)."""
  cores = len(os.sched_getaffinity(0))
  return max(1, cores // max(1, len(jax.local_devices(backend='cpu'))))


@functools.cache
def convolves_bfloat16() -> bool:
  """Whether this processor's oneDNN has bfloat16 convolutions (AVX-512 BF16 or AMX kernels;
  oneDNN 3.2 found neither on an AMD EPYC, and ran AVX2 float32 kernels there)."""
  loaded = _load()[0]
  return bool(loaded and loaded.ConvjaxConvolvesBfloat16(LAYOUT))


def convolves(dtype) -> bool:
  """Whether `conv2d` takes operands of `dtype` here: float32 always, bfloat16 where this
  processor's oneDNN convolves it (elsewhere XLA takes bfloat16 convolutions)."""
  dtype = jnp.dtype(dtype)
  return dtype == jnp.float32 or (dtype == jnp.bfloat16 and convolves_bfloat16())


def supports(x_shape, kernel_shape, dtype) -> bool:
  """Whether `conv2d` takes these operands: 2-D NHWC / HWIO of a dtype it `convolves`."""
  return len(x_shape) == 4 and len(kernel_shape) == 4 and convolves(dtype)


_KINDS = ('forward', 'backward_data', 'backward_weights')


def overrun_bytes(kind: str, x_shape, kernel_shape, strides=(1, 1),
                  padding=((0, 0), (0, 0)), dilation=(1, 1), groups: int = 1,
                  threads: int = 1, shortfall: int = 0) -> int:
  """Bytes oneDNN writes outside its buffers in one float32 call of `kind` ('forward',
  'backward_data' or 'backward_weights') on x [N, H, W, C], kernel [KH, KW, C / groups, O].

  The extension runs the call on its own buffers, each between guard bytes of a known pattern
  (so are the call's temporaries and scratchpad), and counts the guard bytes changed: 0 when
  oneDNN stayed inside every buffer, -1 when oneDNN refuses the convolution. It calls the library
  directly, not through XLA, so a stray write cannot corrupt XLA's heap unseen.
  shortfall: bytes fewer given to the output than it needs (how a test shows an overrun is seen).
  """
  extension = library()
  n, h, w, _ = x_shape
  kh, kw, _, o = kernel_shape
  y_shape = (n, convolution_math.output_size(h, kh, tuple(padding[0]), strides[0], dilation[0]),
             convolution_math.output_size(w, kw, tuple(padding[1]), strides[1], dilation[1]), o)
  ints = lambda values: (ctypes.c_int64 * len(values))(*values)
  extension.ConvjaxOverrunBytes.restype = ctypes.c_int64
  return extension.ConvjaxOverrunBytes(
      ctypes.c_int64(_KINDS.index(kind)), ints(x_shape), ints(kernel_shape), ints(y_shape),
      ints(strides), ints([p for pair in padding for p in pair]), ints(dilation),
      ctypes.c_int64(groups), ctypes.c_int64(threads), ctypes.c_int64(LAYOUT),
      ctypes.c_int64(shortfall))


def _attributes(strides, padding, dilation, groups, threads) -> dict:
  """The custom calls' attributes; first makes sure their targets are registered with XLA."""
  library()
  return dict(strides=np.asarray(strides, np.int64),
              padding=np.asarray([p for pair in padding for p in pair], np.int64),
              dilation=np.asarray(dilation, np.int64), groups=np.int64(groups),
              threads=np.int64(threads), layout=np.int64(LAYOUT))


def _forward(x, kernel, strides, padding, dilation, groups, threads):
  n, h, w, _ = x.shape
  kh, kw, _, o = kernel.shape
  out = jax.ShapeDtypeStruct(
      (n, convolution_math.output_size(h, kh, tuple(padding[0]), strides[0], dilation[0]),
       convolution_math.output_size(w, kw, tuple(padding[1]), strides[1], dilation[1]), o), x.dtype)
  # Flax adds the bias after the convolution, and XLA fuses that addition into what follows.
  return jax.ffi.ffi_call('convjax_conv_forward', out, vmap_method='sequential')(
      x, kernel, **_attributes(strides, padding, dilation, groups, threads))


# oneDNN 3.2's 1x1 backward-weights kernels first copy a strided input to unit stride, into a
# workspace booked for the real number of input channels but addressed in whole channel blocks (8
# for AVX2, 16 for AVX-512). With fewer channels than a block they write past it and corrupt the
# heap (uxlfoundation/oneDNN#6035; seen on one thread per call, 4 CPU devices on 2 cores).
# Below this many input channels per group, conv2d does that copy itself, by slicing, and hands
# oneDNN a unit-stride 1x1 convolution.
_POINTWISE_BLOCK = 16


def subsamples_first(kernel_shape, strides, padding) -> bool:
  """Whether conv2d hands oneDNN x[:, ::sh, ::sw] at unit strides instead (_POINTWISE_BLOCK):
  a strided 1x1 convolution without padding, of fewer input channels per group than a block."""
  pointwise = tuple(kernel_shape[:2]) == (1, 1) and all(p == (0, 0) for p in map(tuple, padding))
  return pointwise and tuple(strides) != (1, 1) and kernel_shape[2] < _POINTWISE_BLOCK


def _unit_stride_pointwise(x, kernel, strides, padding):
  """A strided 1x1 convolution without padding as (x subsampled, unit strides); else unchanged.

  y[n, i, j] = sum_c x[n, s * i, s * j, c] k[c]: the same outputs, and JAX's transpose of the
  slice puts the input gradient back on the sampled pixels (zeros elsewhere)."""
  if not subsamples_first(kernel.shape, strides, padding):
    return x, strides
  return x[:, ::strides[0], ::strides[1], :], (1, 1)


def conv2d(x: jnp.ndarray, kernel: jnp.ndarray, strides: Sequence[int] = (1, 1),
           padding: Sequence[tuple[int, int]] = ((0, 0), (0, 0)),
           dilation: Sequence[int] = (1, 1), groups: int = 1, threads: int = 1):
  """Cross-correlation of x [N, H, W, C] with kernel [KH, KW, C / groups, O] -> [N, OH, OW, O].

  strides, dilation: 2 ints; padding: ((top, bottom), (left, right)) zeros; threads: OpenMP
  threads of each oneDNN call. The same numbers as lax.conv_general_dilated with NHWC / HWIO
  dimension numbers, up to float rounding.
  """
  x, strides = _unit_stride_pointwise(x, kernel, strides, padding)
  return _conv2d(x, kernel, tuple(strides), padding, dilation, groups, threads)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def _conv2d(x, kernel, strides, padding, dilation, groups, threads):
  return _forward(x, kernel, strides, padding, dilation, groups, threads)


def _conv2d_fwd(x, kernel, strides, padding, dilation, groups, threads):
  return _forward(x, kernel, strides, padding, dilation, groups, threads), (x, kernel)


def _conv2d_bwd(strides, padding, dilation, groups, threads, residuals, dy):
  x, kernel = residuals
  attributes = _attributes(strides, padding, dilation, groups, threads)
  dx = jax.ffi.ffi_call('convjax_conv_backward_data', jax.ShapeDtypeStruct(x.shape, x.dtype),
                        vmap_method='sequential')(dy, kernel, **attributes)
  dk = jax.ffi.ffi_call('convjax_conv_backward_weights',
                        jax.ShapeDtypeStruct(kernel.shape, kernel.dtype),
                        vmap_method='sequential')(x, dy, **attributes)
  return dx, dk


_conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)

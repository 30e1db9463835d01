"""The dense (fully connected) layer's products through oneDNN on CPU, with its gradient.

For x [M, K] and the kernel w [K, O] (flax's layout: inputs on rows):

  y  = x @ w          [M, O]   forward
  dx = dy @ w^T       [M, K]   the input gradient
  dw = x^T @ dy       [K, O]   the kernel gradient (summed over the M rows)

Each is a product by oneDNN's matmul primitive (native/onednn_dense.cc), tied together by a custom
VJP; both gradients come from one call. oneDNN reads w^T and x^T through their strides; XLA:CPU
instead writes transposed copies of the operands it needs (AlexNet's 9216 x 4096 weights: 151 MB,
every step) and runs them on its own threads beside our convolutions. The bias stays with flax,
which XLA fuses into what follows.

`conv_backend.dot_general`, which `layers.dense` gives flax's Dense, calls `dense` where the
'onednn' backend is on.
"""
import ctypes
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from convjax.nn import onednn

# CONVJAX_ONEDNN_DENSE=0 leaves dense layers to XLA under the 'onednn' backend (to compare the two).
ENABLED = os.environ.get('CONVJAX_ONEDNN_DENSE', '1') != '0'


def supports(x, kernel) -> bool:
  """Whether `dense` takes x [M, K] and kernel [K, O]: both float32, or both bfloat16 where this
  processor's oneDNN has those kernels, with K > 0 (and CONVJAX_ONEDNN_DENSE is not 0)."""
  return (ENABLED and x.ndim == 2 and kernel.ndim == 2 and x.shape[1] == kernel.shape[0] > 0
          and x.dtype == kernel.dtype and x.dtype in (jnp.float32, jnp.bfloat16)
          and onednn.has_kernels('ConvjaxMatmulSupports', x.dtype == jnp.bfloat16))


def overrun_bytes(m: int, k: int, n: int, trans_a: bool = False, trans_b: bool = False,
                  threads: int = 1, dtype=jnp.float32) -> int:
  """Bytes oneDNN writes outside its buffers in one product [m, k] @ [k, n] of dtype (operands
  stored transposed with trans_a, trans_b; as onednn.overrun_bytes does for convolutions): 0 when
  it stays inside, -1 when it refuses."""
  library = onednn.library()
  library.ConvjaxMatmulOverrunBytes.restype = ctypes.c_int64
  return library.ConvjaxMatmulOverrunBytes(*(ctypes.c_int64(int(v)) for v in (
      m, k, n, trans_a, trans_b, threads, jnp.dtype(dtype) == jnp.bfloat16)))


def matmul(a, b, threads: int = 1, trans_a: bool = False, trans_b: bool = False):
  """op(a) @ op(b) by one oneDNN call, op transposing where asked: a [m, k] (or [k, m]), b [k, n]
  (or [n, k]) -> [m, n], in a's dtype (float32 or bfloat16; oneDNN accumulates in float32)."""
  onednn.library()  # Registers the target, or says why it cannot.
  m = a.shape[1] if trans_a else a.shape[0]
  n = b.shape[0] if trans_b else b.shape[1]
  return jax.ffi.ffi_call('convjax_matmul', jax.ShapeDtypeStruct((m, n), a.dtype),
                          vmap_method='sequential')(
                              a, b, threads=np.int64(threads), trans_a=np.int64(trans_a),
                              trans_b=np.int64(trans_b))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def dense(x, kernel, threads: int = 1):
  """x [M, K] @ kernel [K, O] -> [M, O] through oneDNN; `threads`: OpenMP threads of each call."""
  return matmul(x, kernel, threads)


def _dense_fwd(x, kernel, threads):
  return matmul(x, kernel, threads), (x, kernel)


def _dense_bwd(threads, residuals, dy):
  """(dx, dkernel) in one call (native/onednn_dense.cc says why not two)."""
  x, kernel = residuals
  return jax.ffi.ffi_call('convjax_dense_backward', (jax.ShapeDtypeStruct(x.shape, x.dtype),
                                                    jax.ShapeDtypeStruct(kernel.shape, x.dtype)),
                          vmap_method='sequential')(x, kernel, dy, threads=np.int64(threads))


dense.defvjp(_dense_fwd, _dense_bwd)

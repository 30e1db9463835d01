"""GELU through oneDNN on CPU, with its gradient (a custom VJP).

  gelu(x) = x * Phi(x),   Phi(x) = (1 + erf(x / sqrt(2))) / 2   (the normal CDF)
  d gelu / dx = Phi(x) + x * phi(x),   phi(x) = exp(-x^2 / 2) / sqrt(2 pi)

or, with approximate=True, Phi(x) ~ (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) / 2 and its
derivative (Hendrycks & Gimpel 2016 give both). PyTorch's nn.GELU() and so torchvision's ConvNeXt
use erf, which `convnext_tiny` must too to compute torchvision's logits; flax's nn.gelu defaults
to tanh, which SpeedNet uses. XLA:CPU evaluates either in loops of its own that cost several
times the memory traffic (PERFORMANCE.md has the figures); oneDNN's vectorised eltwise kernels
read and write each value once, in float32 or bfloat16.

The handlers live in the extension (native/onednn_gelu.cc), loaded and registered by `onednn`;
`layers.gelu` calls `gelu` where the 'onednn' backend is on.
"""
import ctypes
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from convjax.nn import onednn

# CONVJAX_ONEDNN_GELU=0 leaves the GELU to XLA under the 'onednn' backend (to compare the two).
ENABLED = os.environ.get('CONVJAX_ONEDNN_GELU', '1') != '0'


def supports(x) -> bool:
  """Whether `gelu` takes x: float32, or bfloat16 where this processor's oneDNN has bfloat16
  kernels (and CONVJAX_ONEDNN_GELU is not 0)."""
  return (ENABLED and x.dtype in (jnp.float32, jnp.bfloat16)
          and onednn.has_kernels('ConvjaxGeluSupports', x.dtype == jnp.bfloat16))


def overrun_bytes(count: int, backward: bool, threads: int = 1, approximate: bool = False,
                  dtype=jnp.float32) -> int:
  """Bytes oneDNN writes outside its buffers in one GELU call on `count` values of dtype (as
  onednn.overrun_bytes does for convolutions): 0 when it stays inside, -1 when it refuses."""
  library = onednn.library()
  library.ConvjaxGeluOverrunBytes.restype = ctypes.c_int64
  return library.ConvjaxGeluOverrunBytes(*(ctypes.c_int64(int(v)) for v in (
      count, threads, backward, approximate, jnp.dtype(dtype) == jnp.bfloat16)))


def _call(target: str, like, *args, threads: int, approximate: bool):
  onednn.library()  # Registers the targets, or says why it cannot.
  return jax.ffi.ffi_call(target, jax.ShapeDtypeStruct(like.shape, like.dtype),
                          vmap_method='sequential')(
                              *args, threads=np.int64(threads), approximate=np.int64(approximate))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def gelu(x, threads: int = 1, approximate: bool = False):
  """x * Phi(x), element-wise: x [...] (float32 or bfloat16) -> [...]; `threads`: OpenMP
  threads of the call; approximate: Phi by tanh, not erf."""
  return _call('convjax_gelu_forward', x, x, threads=threads, approximate=approximate)


def _gelu_fwd(x, threads, approximate):
  return gelu(x, threads, approximate), x  # The gradient needs x itself, not the output.


def _gelu_bwd(threads, approximate, x, dy):
  return (_call('convjax_gelu_backward', x, x, dy, threads=threads, approximate=approximate),)


gelu.defvjp(_gelu_fwd, _gelu_bwd)

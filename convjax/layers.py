"""Layers shared by the model families."""
import flax.linen as nn
import jax.numpy as jnp


def max_pool_2x2(x: jnp.ndarray) -> jnp.ndarray:
  """2x2 max pooling with stride 2 and VALID padding: [b, h, w, c] -> [b, h // 2, w // 2, c].

  Same values and gradients as `nn.max_pool(x, (2, 2), (2, 2))`, but written as a reshape and a
  max over the two window axes. XLA:CPU lowers that to a plain reduction whose gradient is a
  cheap select, where reduce_window's gradient is a slow select-and-scatter.
  Ties inside a window are the one difference: here the gradient is shared equally among the
  tied maxima, where reduce_window gives it all to one. After a ReLU the usual tie is an
  all-zero window, whose gradient the ReLU zeroes either way.
  """
  b, h, w, c = x.shape
  x = x[:, :h - h % 2, :w - w % 2, :]  # VALID: drop a trailing odd row or column.
  return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def reference_max_pool_2x2(x: jnp.ndarray) -> jnp.ndarray:
  """Flax's reduce_window max pool, the definition `max_pool_2x2` must match."""
  return nn.max_pool(x, (2, 2), strides=(2, 2), padding='VALID')

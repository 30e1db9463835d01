"""What every model family shares: the classifier head and the features-or-logits convention.

Every registry model is called as `model.apply(variables, x, train=..., return_features=...)`:
  x: [batch, height, width, channels]
  returns logits float32 [batch, num_classes], or with return_features=True the pair
  (logits, features [batch, embedding]), features being the penultimate activations that feed the
  final classifier (the embedding that similarity search and feature probes use).
An image backbone also takes `feature_indices` at call time and then returns only its multi-scale
feature maps, a list of [batch, h_i, w_i, c_i] (FeatureTaps below; convjax/models/features.py).
"""
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from convjax import errors
from convjax.nn import layers


def classify(features: jnp.ndarray, num_classes: int, return_features: bool,
             dtype: Any = jnp.float32, name: str = 'classifier'):
  """The final fully connected softmax layer: features [b, d] -> logits [b, num_classes] float32.

  Logits are cast to float32 so the loss and softmax run in float32 whatever the compute dtype.
  """
  logits = layers.dense(num_classes, dtype=dtype, name=name)(features).astype(jnp.float32)
  return outputs(logits, features, return_features)


def outputs(logits: jnp.ndarray, features: jnp.ndarray, return_features: bool):
  """logits, or (logits, features) when the caller asked for the embedding too."""
  return (logits, features.astype(jnp.float32)) if return_features else logits


def hidden_layers(x: jnp.ndarray, width: int, depth: int, activation: Callable, dropout_rate: float,
                  train: bool, dtype: Any = jnp.float32) -> jnp.ndarray:
  """The fully connected hidden layers of AlexNet-era heads: depth x (dense -> act -> dropout).

  x: [b, d] -> [b, width].
  """
  for _ in range(depth):
    x = activation(layers.dense(width, dtype=dtype)(x))
    x = layers.dropout(x, dropout_rate, train)
  return x


def conv_bn(x: jnp.ndarray, features: int, kernel_size, train: bool, dtype: Any = jnp.float32,
            ndim: int = 2, strides=1, relu: bool = True) -> jnp.ndarray:
  """Convolution over `ndim` axes ('SAME', no bias: batch norm's shift replaces it), batch norm,
  then ReLU unless relu=False. [b, *spatial, c] -> [b, *spatial / strides, features]."""
  x = layers.conv(features, kernel_size, ndim=ndim, strides=strides, padding='SAME',
                  use_bias=False, dtype=dtype)(x)
  return layers.norm_act(layers.batch_norm(train, dtype=dtype), nn.relu if relu else None, x)


class FeatureTaps:
  """The intermediate feature maps a backbone was asked for, after timm's `features_only`.

  A backbone has `count` tap points, numbered from the input: the last map at each resolution
  (the output of a stem or stage), the last being the map its classifier head reads. It calls
  `take(x)` at each in order and returns `maps` as soon as `take` says every requested map is in,
  so later stages are never built or computed.

    indices: tap numbers, negative counting from the end; 'all' for every tap point; None for
      classification (no taps).
  """

  def __init__(self, indices: Sequence[int] | str | None, count: int):
    if indices == 'all':
      indices = range(count)
    self.requested = None if indices is None else [self._resolve(i, count) for i in indices]
    if self.requested is not None and len(set(self.requested)) != len(self.requested):
      raise errors.InvalidValueError(f'feature indices {tuple(indices)} name a map twice')
    self._taken: dict[int, jnp.ndarray] = {}
    self._next = 0

  @staticmethod
  def _resolve(index: int, count: int) -> int:
    if not -count <= index < count:
      raise errors.InvalidValueError(f'feature index {index} is out of range: this backbone has '
                                     f'{count} feature maps, indices {-count} to {count - 1}')
    return index % count

  def take(self, x: jnp.ndarray) -> bool:
    """Records tap point x [b, h, w, c] if requested; True once every requested map is in."""
    index, self._next = self._next, self._next + 1
    if self.requested is None:
      return False
    if index in self.requested:
      self._taken[index] = x
    return len(self._taken) == len(self.requested)

  @property
  def maps(self) -> list[jnp.ndarray]:
    """The requested maps, in the order requested."""
    return [self._taken[index] for index in self.requested]

"""What every model family shares: the classifier head and the features-or-logits convention.

Every registry model is called as `model.apply(variables, x, train=..., return_features=...)`:
  x: [batch, height, width, channels]
  returns logits float32 [batch, num_classes], or with return_features=True the pair
  (logits, features [batch, embedding]), features being the penultimate activations that feed the
  final classifier (the embedding that similarity search and feature probes use).
"""
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from convjax.nn import layers


def classify(features: jnp.ndarray, num_classes: int, return_features: bool,
             dtype: Any = jnp.float32, name: str = 'classifier'):
  """The final fully connected softmax layer: features [b, d] -> logits [b, num_classes] float32.

  Logits are cast to float32 so the loss and softmax run in float32 whatever the compute dtype.
  """
  logits = nn.Dense(num_classes, dtype=dtype, name=name)(features).astype(jnp.float32)
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
    x = activation(nn.Dense(width, dtype=dtype)(x))
    x = layers.dropout(x, dropout_rate, train)
  return x


def conv_bn(x: jnp.ndarray, features: int, kernel_size, train: bool, dtype: Any = jnp.float32,
            ndim: int = 2, strides=1, relu: bool = True) -> jnp.ndarray:
  """Convolution over `ndim` axes ('SAME', no bias: batch norm's shift replaces it), batch norm,
  then ReLU unless relu=False. [b, *spatial, c] -> [b, *spatial / strides, features]."""
  x = layers.conv(features, kernel_size, ndim=ndim, strides=strides, padding='SAME',
                  use_bias=False, dtype=dtype)(x)
  x = layers.batch_norm(train, dtype=dtype)(x)
  return nn.relu(x) if relu else x

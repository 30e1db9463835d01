"""LeNet family (LeCun et al. 1998).

`LeNet5` is the modern variant that textbooks and tutorials call LeNet-5: ReLU instead of scaled tanh,
max pooling instead of trainable subsampling, full C3 connectivity and a softmax classifier instead of
RBF units. On 28x28x1 input, C1's padding of 2 gives the 28x28 maps the paper gets from 32x32 input.

  conv 5x5x6 pad 2 -> relu -> maxpool 2   28x28x6 -> 14x14x6
  conv 5x5x16      -> relu -> maxpool 2   10x10x16 -> 5x5x16
  dense 120 -> relu -> dense 84 -> relu -> dense num_classes

Parameters at 28x28x1 and 10 classes: 156 + 2,416 + 48,120 + 10,164 + 850 = 61,706.
"""
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from convjax import layers


class LeNet5(nn.Module):
  """LeNet-5 with ReLU and max pooling. Input [batch, 28, 28, 1] -> logits [batch, num_classes]."""
  num_classes: int = 10
  activation: Callable[[jnp.ndarray], jnp.ndarray] = nn.relu
  pool: Callable[[jnp.ndarray], jnp.ndarray] = layers.max_pool_2x2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # No dropout or batch norm: train and eval are the same function.
    conv = lambda features, padding: nn.Conv(
        features, (5, 5), padding=padding, dtype=self.dtype)
    x = self.pool(self.activation(conv(6, 2)(x)))        # C1, S2
    x = self.pool(self.activation(conv(16, 'VALID')(x)))  # C3, S4
    x = x.reshape((x.shape[0], -1))
    x = self.activation(nn.Dense(120, dtype=self.dtype)(x))  # C5 (a 5x5 conv on 5x5 maps)
    x = self.activation(nn.Dense(84, dtype=self.dtype)(x))   # F6
    x = nn.Dense(self.num_classes, dtype=self.dtype)(x)
    return x.astype(jnp.float32)  # Loss and softmax in float32, whatever the compute dtype.

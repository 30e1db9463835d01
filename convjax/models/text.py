"""1-D convnets over bytes of text: [b, length, 1] byte codes -> logits.

Inputs are UTF-8 byte codes 0..255 (0 pads), carried as floats through the input normalisation
(convjax/data/text.py) and rounded back to integers here.

- `CharCNN` after Zhang, Zhao & LeCun 2015 ("Character-level convolutional networks for text
  classification"), small model: six convolutions (kernels 7, 7, 3, 3, 3, 3; max pooling of 3
  after the 1st, 2nd and 6th), two fully connected layers with dropout 0.5, over one-hot
  characters. Here the alphabet is the 256 byte values and the widths are scaled to the data.
- `KimCNN` after Kim 2014 ("Convolutional neural networks for sentence classification"): an
  embedding, convolutions of several widths side by side, each max-pooled over the whole text
  ("max-over-time"), concatenated, dropout, one linear layer.

A convolution over one-hot codes is a sum of table lookups: with kernel W [k, 256, F], output
position t is sum_j W[j, code[t + j]] (only one input channel is 1). `OneHotConv` computes it that
way, without forming the [length, 256] one-hot array.
"""
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from convjax.models import common
from convjax.nn import layers

ALPHABET = 256  # Byte values.


def byte_codes(x: jnp.ndarray) -> jnp.ndarray:
  """[b, length, 1] floats holding byte codes -> int32 [b, length]."""
  return jnp.clip(jnp.round(x[..., 0].astype(jnp.float32)), 0, ALPHABET - 1).astype(jnp.int32)


class OneHotConv(nn.Module):
  """A 'VALID' 1-D convolution of one-hot codes: int32 [b, length] -> [b, length - k + 1, F],
  equal to layers.conv1d over jax.nn.one_hot(codes, ALPHABET)."""
  features: int
  kernel_size: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, codes: jnp.ndarray) -> jnp.ndarray:
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (self.kernel_size, ALPHABET, self.features))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    positions = codes.shape[1] - self.kernel_size + 1
    out = sum(jnp.take(kernel[j], codes[:, j:j + positions], axis=0)
              for j in range(self.kernel_size))
    return (out + bias).astype(self.dtype)

  def multiply_adds(self, output_shape) -> int:
    """What the equivalent convolution over one-hot input costs, per example."""
    return output_shape[1] * output_shape[2] * self.kernel_size * ALPHABET


class CharCNN(nn.Module):
  """Byte codes [b, length, 1] -> logits; features: the second fully connected layer.

  convs: (kernel, max-pool window or 0) per layer, all with `features` outputs and 'VALID'
  padding, as in the paper's Table 1.
  """
  features: int = 256
  hidden: int = 1024
  convs: Sequence[tuple[int, int]] = ((7, 3), (7, 3), (3, 0), (3, 0), (3, 0), (3, 3))
  dropout_rate: float = 0.5
  num_classes: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False):
    (kernel, pool), *rest = self.convs
    x = nn.relu(OneHotConv(self.features, kernel, self.dtype)(byte_codes(x)))
    x = layers.max_pool(x, window=pool) if pool else x
    for kernel, pool in rest:
      x = nn.relu(layers.conv(self.features, kernel, ndim=1, padding='VALID', dtype=self.dtype)(x))
      x = layers.max_pool(x, window=pool) if pool else x
    x = common.hidden_layers(layers.flatten(x), self.hidden, 2, nn.relu, self.dropout_rate, train,
                             self.dtype)
    return common.classify(x, self.num_classes, return_features, self.dtype)


class KimCNN(nn.Module):
  """Byte codes [b, length, 1] -> logits; features: the pooled filters, concatenated."""
  embedding: int = 32
  widths: Sequence[int] = (3, 4, 5)
  filters: int = 100
  dropout_rate: float = 0.5
  num_classes: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False):
    x = nn.Embed(ALPHABET, self.embedding, dtype=self.dtype)(byte_codes(x))
    pooled = [layers.global_pool(nn.relu(layers.conv(self.filters, width, ndim=1,
                                                     padding='VALID', dtype=self.dtype)(x)), 'max')
              for width in self.widths]
    x = layers.dropout(jnp.concatenate(pooled, -1), self.dropout_rate, train)
    return common.classify(x, self.num_classes, return_features, self.dtype)


# Zhang et al.'s small model has 256 features and 1024 hidden units on 1,014 characters; on
# 256-byte quotes half of each keeps two CPU cores' epochs short.
CharCNNSmall = functools.partial(CharCNN, features=128, hidden=512)

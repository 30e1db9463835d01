"""Network in Network (Lin, Chen & Yan 2013).

What NiN introduced: the mlpconv layer, a conv followed by 1x1 convs, a small multilayer
perceptron slid over every position, and global average pooling as the classifier: the last
mlpconv outputs one map per class and each map's mean is that class's logit, with no FC layers.

The CIFAR-10 network of the paper's released model, three mlpconv blocks on 32x32x3:
  conv 5x5 192 -> 1x1 160 -> 1x1 96  -> max pool 3x3/2 -> dropout 0.5     32 -> 16
  conv 5x5 192 -> 1x1 192 -> 1x1 192 -> avg pool 3x3/2 -> dropout 0.5     16 -> 8
  conv 3x3 192 -> 1x1 192 -> 1x1 classes -> global average pool -> logits
ReLU after every conv except the last (the logits). Pools keep a final partial window (Caffe).
"""
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from convjax.nn import layers
from convjax.models import common


class MlpConv(nn.Module):
  """conv kxk -> relu -> (1x1 conv -> relu)*: [b, h, w, c] -> [b, h, w, widths[-1]]."""
  widths: Sequence[int]
  kernel_size: int
  activation: Callable = nn.relu
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    for index, width in enumerate(self.widths):
      kernel = self.kernel_size if index == 0 else 1
      x = self.activation(layers.conv2d(width, kernel, padding='HALF', dtype=self.dtype)(x))
    return x


class NiN(nn.Module):
  """[b, h, w, c] -> logits [b, num_classes]; features: the pooled 192 maps before the last 1x1."""
  num_classes: int = 10
  width: int = 192
  dropout_rate: float = 0.5
  activation: Callable = nn.relu
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False,
               feature_indices: Sequence[int] | str | None = None):
    w = self.width
    taps = common.FeatureTaps(feature_indices, 3)  # Taps: each mlpconv block (before its pool).
    x = MlpConv((w, 160, 96), 5, self.activation, dtype=self.dtype)(x)
    if taps.take(x):
      return taps.maps
    x = layers.dropout(layers.max_pool(x, window=3, strides=2, padding='CEIL'),
                       self.dropout_rate, train)
    x = MlpConv((w, w, w), 5, self.activation, dtype=self.dtype)(x)
    if taps.take(x):
      return taps.maps
    x = layers.dropout(layers.avg_pool(x, window=3, strides=2, padding='CEIL'),
                       self.dropout_rate, train)
    x = MlpConv((w, w), 3, self.activation, dtype=self.dtype)(x)
    if taps.take(x):
      return taps.maps
    # The class maps: one 1x1 conv with a map per class, whose spatial means are the logits.
    class_maps = layers.conv2d(self.num_classes, 1, dtype=self.dtype, name='class_maps')(x)
    logits = layers.global_pool(class_maps).astype(jnp.float32)
    return common.outputs(logits, layers.global_pool(x), return_features)

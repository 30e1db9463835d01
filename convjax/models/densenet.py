"""DenseNet (Huang et al. 2017, "Densely Connected Convolutional Networks").

What DenseNet introduced: inside a dense block every layer receives the concatenation of all
earlier layers' feature maps and adds `growth_rate` new ones, so features are reused rather than
relearned, and each layer stays narrow (k = 32 maps).

  DenseNet-BC options, exposed as fields:
    B (bottleneck): each layer is BN-ReLU-conv1x1(bn_size * k)-BN-ReLU-conv3x3(k); bn_size=0 drops
      the 1x1 and gives the plain BN-ReLU-conv3x3 layer.
    C (compression): a transition layer keeps floor(compression * m) of its m input maps
      (BN-ReLU-conv1x1, then 2x2 average pool); compression=1 is no compression.

  densenet121: k = 32, blocks of (6, 12, 24, 16) layers, 64 stem filters, bn_size 4,
  compression 0.5, behind a 7x7/2 conv and 3x3/2 max pool stem; 7,978,856 parameters at
  224x224x3, as torchvision.
  densenet_bc100: DenseNet-BC (L=100, k=12) for 32x32 images, 769,162 parameters (0.8M).

Small-image stem: for inputs below 64x64, models.create replaces the stem with one 3x3/1 conv
(DenseNet-BC's CIFAR stem), so three transitions take 32x32 to 4x4.
"""
import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from convjax import errors
from convjax.nn import layers
from convjax.models import common


class DenseLayer(nn.Module):
  """[b, h, w, m] -> [b, h, w, m + growth_rate]: new maps concatenated after the old ones."""
  growth_rate: int
  bn_size: int
  norm: Any
  conv: Any
  activation: Callable
  dropout_rate: float = 0.0
  drop_path_rate: float = 0.0

  @nn.compact
  def __call__(self, x, train: bool):
    y = x
    if self.bn_size:
      y = self.conv(self.bn_size * self.growth_rate, 1)(
          layers.norm_act(self.norm(), self.activation, y))
    y = self.conv(self.growth_rate, 3)(layers.norm_act(self.norm(), self.activation, y))
    y = layers.drop_path(layers.dropout(y, self.dropout_rate, train), self.drop_path_rate, train)
    return jnp.concatenate([x, y], axis=-1)


class DenseNet(nn.Module):
  """[b, h, w, c] -> logits [b, num_classes]; features: the pooled final maps [b, m]."""
  block_sizes: Sequence[int] = (6, 12, 24, 16)
  num_classes: int = 1000
  growth_rate: int = 32
  init_features: int = 64
  bn_size: int = 4  # B: bottleneck width multiplier; 0 for no bottleneck.
  compression: float = 0.5  # C: fraction of maps a transition keeps.
  dropout_rate: float = 0.0
  # Stochastic depth on each dense layer's new maps: the last layer's rate; earlier ones follow
  # layers.depth_rates over all layers.
  drop_path_rate: float = 0.0
  stem: str = 'imagenet'  # 'imagenet' (7x7/2 conv + 3x3/2 max pool) or 'small' (3x3/1 conv).
  normalization: str = 'batch'  # 'batch', 'group' or 'none' (layers.NORMS).
  activation: Callable = nn.relu
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False,
               feature_indices: Sequence[int] | str | None = None):
    norm = layers.normalization(self.normalization, train, self.dtype)

    conv = functools.partial(layers.conv2d, padding='HALF', use_bias=False, dtype=self.dtype)
    # Taps: the stem (before its max pool), each dense block but the last (before its
    # transition), and the last block after the final norm and activation.
    taps = common.FeatureTaps(feature_indices, 1 + len(self.block_sizes))
    if self.stem == 'imagenet':
      x = layers.norm_act(norm(name='stem_norm'), self.activation,
                          conv(self.init_features, 7, strides=2, name='stem_conv')(x))
      if taps.take(x):
        return taps.maps
      x = layers.max_pool(x, window=3, strides=2, padding=1)
    elif self.stem == 'small':
      x = conv(self.init_features, 3, name='stem_conv')(x)
      if taps.take(x):
        return taps.maps
    else:
      raise errors.InvalidValueError(
          f"unknown stem '{self.stem}'; valid stems are: imagenet, small")
    rates = iter(layers.depth_rates(self.drop_path_rate, sum(self.block_sizes)))
    for index, num_layers in enumerate(self.block_sizes):
      for _ in range(num_layers):
        x = DenseLayer(self.growth_rate, self.bn_size, norm, conv, self.activation,
                       self.dropout_rate, next(rates))(x, train)
      if index < len(self.block_sizes) - 1:  # Transition layer.
        if taps.take(x):
          return taps.maps
        x = conv(int(x.shape[-1] * self.compression), 1)(
            layers.norm_act(norm(), self.activation, x))
        x = layers.avg_pool(x, window=2)
    x = layers.norm_act(norm(name='final_norm'), self.activation, x)
    if taps.take(x):
      return taps.maps
    x = layers.global_pool(x)
    return common.classify(x, self.num_classes, return_features, self.dtype)


DenseNet121 = functools.partial(DenseNet, block_sizes=(6, 12, 24, 16))
# DenseNet-BC for CIFAR (section 3): 3 blocks of (L - 4) / 6 bottleneck layers, k = 12, a 3x3
# stem of 2k maps; L = 100 has 0.8M parameters (Table 2).
DenseNetBC100 = functools.partial(DenseNet, block_sizes=(16, 16, 16), growth_rate=12,
                                  init_features=24, stem='small', num_classes=10)

"""Residual networks (He et al. 2015, "Deep Residual Learning for Image Recognition").

What ResNet introduced: each block learns a residual F(x) added to an identity shortcut,
y = relu(F(x) + x), so very deep networks (152 layers) train as easily as shallow ones.

ImageNet models (stem: 7x7/2 conv, 3x3/2 max pool; 4 stages of 64, 128, 256, 512 base filters):
  resnet18/34: BasicBlock (3x3, 3x3), stages (2,2,2,2) and (3,4,6,3).
  resnet50/101/152: Bottleneck (1x1, 3x3, 1x1 with 4x expansion), stages (3,4,6,3), (3,4,23,3),
    (3,8,36,3). The stride-2 of a downsampling bottleneck sits on the 3x3 conv, not the first 1x1
    as in the paper: "ResNet v1.5", the variant torchvision and the flax ImageNet example train,
    about 0.5 points more accurate for the same parameters.
  Shortcuts that change shape are 1x1 projections with batch norm (the paper's option B).

CIFAR models (section 4.2), resnet20/32/44/56/110 = 6n+2 layers: a 3x3 stem of 16 filters, then
3 stages of n BasicBlocks with 16, 32 and 64 filters on 32x32, 16x16 and 8x8 maps. Shortcuts are
option A: parameter-free, a strided identity with zero-padded extra channels.

Small-image stem (stem='small'): the ImageNet models' 7x7/2 conv and max pool, which cut 224 to 56,
become one 3x3/1 conv, so 32x32 or 28x28 inputs keep their resolution into stage 1. This is the
CIFAR stem; models.create picks it automatically for inputs smaller than 64x64.

Convolutions pad k // 2 on both sides (PyTorch's convention), so strided convs align as in the
reference implementations; conv layers have no bias, as batch norm follows each one.
"""
import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from convjax import errors
from convjax.nn import layers
from convjax.models import common

ModuleDef = Any


def _shortcut(x: jnp.ndarray, filters: int, strides: int, kind: str, conv: ModuleDef,
              norm: ModuleDef) -> jnp.ndarray:
  """The identity path, reshaped when the block changes resolution or width."""
  if strides == 1 and x.shape[-1] == filters:
    return x
  if kind == 'A':  # Parameter-free: subsample, then zero-pad the new channels.
    x = x[:, ::strides, ::strides, :]
    return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, filters - x.shape[-1])))
  return norm(name='shortcut_norm')(conv(filters, 1, strides=strides, name='shortcut_conv')(x))


class ResidualBlock(nn.Module):
  """What both blocks share: their fields, and the closing batch norm + shortcut + activation."""
  filters: int
  conv: ModuleDef
  norm: ModuleDef
  activation: Callable
  strides: int = 1
  shortcut: str = 'B'
  zero_init_residual: bool = False
  drop_path: Callable = lambda y: y  # Stochastic depth on the residual branch (layers.drop_path).
  expansion = 1

  def close(self, x, y):
    """Normalises the residual branch y, adds the shortcut of the block input x, activates."""
    # Zero-initialising the last scale makes each block start as the identity (Goyal et al. 2017).
    y = self.drop_path(self.norm(scale_init=nn.initializers.zeros if self.zero_init_residual
                                 else nn.initializers.ones)(y))
    width = self.filters * self.expansion
    return self.activation(y + _shortcut(x, width, self.strides, self.shortcut, self.conv,
                                         self.norm))


class BasicBlock(ResidualBlock):
  """conv3x3(stride) -> bn -> relu -> conv3x3 -> bn, + shortcut, relu. Output width `filters`."""

  @nn.compact
  def __call__(self, x):
    y = layers.norm_act(self.norm(), self.activation,
                        self.conv(self.filters, 3, strides=self.strides)(x))
    return self.close(x, self.conv(self.filters, 3)(y))


class Bottleneck(ResidualBlock):
  """1x1 -> 3x3(stride) -> 1x1 (4 x filters), bn after each, + shortcut, relu (v1.5 stride).

  The inner width is filters * base_width / 64 per group, times `groups` (torchvision's rule):
  ResNet's 64 x 1; ResNeXt's 3x3 in `groups` separate paths (Xie et al. 2017, "aggregated
  residual transformations": 32 groups of 4 -> twice ResNet's inner width); Wide ResNet-50-2's
  inner width doubled in one group (Zagoruyko & Komodakis 2016).
  """
  groups: int = 1
  base_width: int = 64
  expansion = 4

  @nn.compact
  def __call__(self, x):
    inner = self.filters * self.base_width // 64 * self.groups
    y = layers.norm_act(self.norm(), self.activation, self.conv(inner, 1)(x))
    y = layers.norm_act(self.norm(), self.activation,
                        self.conv(inner, 3, strides=self.strides, groups=self.groups)(y))
    return self.close(x, self.conv(self.filters * self.expansion, 1)(y))


class ResNet(nn.Module):
  """A stem, stages of residual blocks (the first block of each later stage halves resolution),
  global average pooling and a linear classifier.

  [b, h, w, c] -> logits [b, num_classes]; features: the pooled [b, widths[-1] * expansion].
  """
  stage_sizes: Sequence[int]
  block: ModuleDef
  num_classes: int = 1000
  widths: Sequence[int] = (64, 128, 256, 512)
  stem: str = 'imagenet'  # 'imagenet' (7x7/2 conv + 3x3/2 max pool) or 'small' (3x3/1 conv).
  shortcut: str = 'B'  # 'B': projection where the shape changes; 'A': zero-padded identity.
  normalization: str = 'batch'  # 'batch', 'group' or 'none' (layers.NORMS).
  activation: Callable = nn.relu
  zero_init_residual: bool = False
  # Stochastic depth: the last block's rate; earlier ones follow layers.depth_rates.
  drop_path_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False,
               feature_indices: Sequence[int] | str | None = None):
    conv = functools.partial(
        layers.conv2d, padding='HALF', use_bias=False, dtype=self.dtype,
        kernel_init=nn.initializers.variance_scaling(2.0, 'fan_out', 'normal'))
    norm = layers.normalization(self.normalization, train, self.dtype)
    # Taps: the stem's activations (before its max pool), then each stage's output.
    taps = common.FeatureTaps(feature_indices, 1 + len(self.stage_sizes))
    if self.stem == 'imagenet':
      x = layers.norm_act(norm(name='stem_norm'), self.activation,
                          conv(self.widths[0], 7, strides=2, name='stem_conv')(x))
      if taps.take(x):
        return taps.maps
      x = layers.max_pool(x, window=3, strides=2, padding=1)
    elif self.stem == 'small':
      x = layers.norm_act(norm(name='stem_norm'), self.activation,
                          conv(self.widths[0], 3, name='stem_conv')(x))
      if taps.take(x):
        return taps.maps
    else:
      raise errors.InvalidValueError(
          f"unknown stem '{self.stem}'; valid stems are: imagenet, small")
    rates = iter(layers.depth_rates(self.drop_path_rate, sum(self.stage_sizes)))
    for stage, (num_blocks, filters) in enumerate(zip(self.stage_sizes, self.widths)):
      for index in range(num_blocks):
        x = self.block(filters, conv, norm, self.activation,
                       strides=2 if stage > 0 and index == 0 else 1, shortcut=self.shortcut,
                       zero_init_residual=self.zero_init_residual,
                       drop_path=functools.partial(layers.drop_path, rate=next(rates),
                                                   train=train))(x)
      if taps.take(x):
        return taps.maps
    return common.classify(layers.global_pool(x), self.num_classes, return_features, self.dtype)


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block=BasicBlock)
ResNet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block=BasicBlock)
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block=Bottleneck)
ResNet101 = functools.partial(ResNet, stage_sizes=(3, 4, 23, 3), block=Bottleneck)
ResNet152 = functools.partial(ResNet, stage_sizes=(3, 8, 36, 3), block=Bottleneck)
ResNeXt50_32x4d = functools.partial(ResNet50, block=functools.partial(Bottleneck, groups=32,
                                                                      base_width=4))
WideResNet50_2 = functools.partial(ResNet50, block=functools.partial(Bottleneck, base_width=128))


def cifar_resnet(depth: int) -> Callable[..., ResNet]:
  """ResNet-depth for CIFAR, depth = 6n + 2: n BasicBlocks per stage, option-A shortcuts."""
  if (depth - 2) % 6:
    raise errors.InvalidValueError(f'CIFAR ResNet depth must be 6n + 2, got {depth}')
  n = (depth - 2) // 6
  return functools.partial(ResNet, stage_sizes=(n, n, n), block=BasicBlock, widths=(16, 32, 64),
                           stem='small', shortcut='A', num_classes=10)

"""Pre-activation residual networks: PreAct-ResNet and Wide ResNets, for small images.

What pre-activation introduced (He et al. 2016, "Identity Mappings in Deep Residual Networks"):
batch norm and ReLU move before each convolution, so the shortcut carries x untouched from block
to block, y = x + F(bn-relu(x)), and the signal of any block reaches any later one unchanged.

What Wide ResNets introduced (Zagoruyko & Komodakis 2016, "Wide Residual Networks"): fewer,
wider pre-activation blocks beat thin, very deep ones. WRN-d-k has (d - 4) / 6 blocks in each of
3 stages of 16k, 32k and 64k channels on 32x32, 16x16 and 8x8 maps, after a 16-channel 3x3 stem,
and optional dropout between a block's two convolutions. WRN-28-10 has 36.5M parameters, WRN-40-4
8.9M and WRN-16-8 11.0M (Table 1's CIFAR-10 models). PreAct-ResNet-18 is ResNet-18's stages
(2, 2, 2, 2 blocks of 64 to 512 channels) in pre-activation form behind a 3x3 stem, the
CIFAR-size net of the mixup and random-erasing papers.

A block whose shape changes takes its shortcut from the pre-activated input through a 1x1
convolution (no batch norm), as the papers' code does; convolutions have no bias, and the
network closes with batch norm and ReLU before global average pooling.
"""
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from convjax import errors
from convjax.models import common
from convjax.nn import layers


class PreActBlock(nn.Module):
  """bn -> relu -> conv3x3(stride) -> bn -> relu -> dropout -> conv3x3, + shortcut.
  [b, h, w, c] -> [b, h / strides, w / strides, filters]."""
  filters: int
  strides: int
  train: bool
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(layers.conv2d, padding='HALF', use_bias=False, dtype=self.dtype)
    norm = functools.partial(layers.batch_norm, self.train, dtype=self.dtype)
    activated = layers.norm_act(norm(name='norm_1'), nn.relu, x)
    changes = self.strides != 1 or x.shape[-1] != self.filters
    shortcut = (conv(self.filters, 1, strides=self.strides, name='shortcut_conv')(activated)
                if changes else x)
    y = conv(self.filters, 3, strides=self.strides, name='conv_1')(activated)
    y = layers.dropout(layers.norm_act(norm(name='norm_2'), nn.relu, y), self.dropout_rate,
                       self.train)
    return shortcut + conv(self.filters, 3, name='conv_2')(y)


class PreActResNet(nn.Module):
  """A 3x3 stem, stages of PreActBlocks (the first block of each later stage halves
  resolution), bn -> relu, global average pooling and a linear classifier.

  [b, h, w, c] -> logits [b, num_classes]; features: the pooled [b, widths[-1]].
  """
  stage_sizes: Sequence[int]
  widths: Sequence[int]
  stem_width: int = 16
  num_classes: int = 10
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False,
               feature_indices: Sequence[int] | str | None = None):
    # Taps: the stem's output, then each stage's (before the closing bn -> relu).
    taps = common.FeatureTaps(feature_indices, 1 + len(self.stage_sizes))
    x = layers.conv2d(self.stem_width, 3, padding='HALF', use_bias=False, dtype=self.dtype,
                      name='stem_conv')(x)
    if taps.take(x):
      return taps.maps
    for stage, (num_blocks, filters) in enumerate(zip(self.stage_sizes, self.widths)):
      for index in range(num_blocks):
        x = PreActBlock(filters, 2 if stage > 0 and index == 0 else 1, train, self.dropout_rate,
                        self.dtype, name=f'stage{stage + 1}_block{index + 1}')(x)
      if taps.take(x):
        return taps.maps
    x = layers.norm_act(layers.batch_norm(train, dtype=self.dtype, name='final_norm'), nn.relu, x)
    return common.classify(layers.global_pool(x), self.num_classes, return_features, self.dtype)


def wide_resnet(depth: int, width: int, **kwargs):
  """WRN-depth-width: (depth - 4) / 6 blocks per stage, stages of 16, 32, 64 x width channels."""
  if (depth - 4) % 6:
    raise errors.InvalidValueError(f'Wide ResNet depth must be 6n + 4, got {depth}')
  n = (depth - 4) // 6
  return functools.partial(PreActResNet, stage_sizes=(n, n, n),
                           widths=(16 * width, 32 * width, 64 * width), stem_width=16, **kwargs)


PreActResNet18 = functools.partial(PreActResNet, stage_sizes=(2, 2, 2, 2),
                                   widths=(64, 128, 256, 512), stem_width=64)

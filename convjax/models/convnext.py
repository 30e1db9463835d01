"""ConvNeXt (Liu et al. 2022, "A ConvNet for the 2020s").

What ConvNeXt introduced: a ResNet modernised step by step towards the vision transformer's
design, staying purely convolutional: a "patchify" stem (4x4 conv, stride 4), stages of
(3, 3, 9, 3) blocks, and an inverted block of a 7x7 depthwise convolution, layer norm over the
channels, and a 1x1 expansion to 4x with GELU and back (written as dense layers over the channel
axis, as the paper's code does); each block's output scaled per channel by a learned layer scale
(initially 1e-6) before the residual sum; downsampling by layer norm + 2x2 stride-2 conv between
stages; fewer activations and norms than ResNet. convnext_tiny: widths 96 to 768,
28,589,128 parameters, stochastic depth 0.1.

torchvision's layout, layer for layer (torchvision_weights.py); GELU is the exact (erf) one.
Small images: patch_size=2 (models.create picks it below 64x64), so 28x28 becomes 14x14.
"""
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from convjax.models import blocks, common
from convjax.nn import layers


class ConvNeXtBlock(nn.Module):
  """x + drop_path(layer_scale * mlp(norm(depthwise7x7(x)))): [b, h, w, c] -> [b, h, w, c]."""
  layer_scale: float = 1e-6
  drop_path_rate: float = 0.0
  train: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    width = x.shape[-1]
    y = layers.conv2d(width, 7, padding=3, groups=width, dtype=self.dtype, name='depthwise')(x)
    y = blocks.channel_layer_norm(self.dtype, name='norm')(y)
    y = layers.gelu(layers.dense(4 * width, dtype=self.dtype, name='expand')(y), approximate=False)
    y = layers.dense(width, dtype=self.dtype, name='project')(y)
    scale = self.param('layer_scale', nn.initializers.constant(self.layer_scale), (width,))
    return x + layers.drop_path(y * scale.astype(y.dtype), self.drop_path_rate, self.train)


class ConvNeXt(nn.Module):
  """[b, h, w, c] -> logits [b, num_classes]; features: the pooled, normalised last stage."""
  stage_sizes: Sequence[int] = (3, 3, 9, 3)
  widths: Sequence[int] = (96, 192, 384, 768)
  num_classes: int = 1000
  patch_size: int = 4
  layer_scale: float = 1e-6
  # Stochastic depth: the last block's rate, rising linearly from 0 at the first.
  drop_path_rate: float = 0.1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False,
               feature_indices: Sequence[int] | str | None = None):
    norm = functools.partial(blocks.channel_layer_norm, self.dtype)
    taps = common.FeatureTaps(feature_indices, len(self.stage_sizes))  # Each stage's output.
    x = layers.conv2d(self.widths[0], self.patch_size, strides=self.patch_size, padding='VALID',
                      dtype=self.dtype, name='stem_conv')(x)
    x = norm(name='stem_norm')(x)
    total, number = sum(self.stage_sizes), 0
    for stage, (count, width) in enumerate(zip(self.stage_sizes, self.widths), 1):
      if stage > 1:
        x = norm(name=f'downsample{stage}_norm')(x)
        x = layers.conv2d(width, 2, strides=2, padding='VALID', dtype=self.dtype,
                          name=f'downsample{stage}_conv')(x)
      for index in range(count):
        rate = self.drop_path_rate * number / max(total - 1, 1)
        x = ConvNeXtBlock(self.layer_scale, rate, train, self.dtype,
                          name=f'stage{stage}_block{index + 1}')(x)
        number += 1
      if taps.take(x):
        return taps.maps
    x = norm(name='head_norm')(layers.global_pool(x))
    return common.classify(x, self.num_classes, return_features, self.dtype)


ConvNeXtTiny = ConvNeXt

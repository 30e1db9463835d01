"""3-D convnets for short clips, [b, frames, h, w, c] -> logits, and their frame-wise 2-D baseline.

- `SpaceTimeNet` after C3D (Tran et al. 2015, "Learning spatiotemporal features with 3D
  convolutional networks"): every convolution is 3x3x3 (time x height x width), with batch norm;
  the first keeps every frame and halves the image (C3D's pool1 is 1x2x2 for the same reason: not
  to merge frames too early), later stages pool 2x2x2. Scaled down to the small clips here.
- The same net with 1x3x3 kernels and no pooling over time is the frame-wise baseline: a 2-D
  convnet applied to every frame alone, its pooled features averaged over the frames (late
  fusion). It cannot see motion, only what is in frames.
- `R2Plus1DNet` after R(2+1)D (Tran et al. 2018, "A closer look at spatiotemporal convolutions for
  action recognition"): residual blocks whose every 3x3x3 convolution is factorised into a 1x3x3
  spatial one and a 3x1x1 temporal one, with batch norm and ReLU between, and M_i intermediate
  channels chosen so that the pair has about the 3x3x3 convolution's parameters (the paper's
  equation 1): M_i = floor(t d^2 N_{i-1} N_i / (d^2 N_{i-1} + t N_i)).
"""
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from convjax.models import common
from convjax.nn import layers


class SpaceTimeNet(nn.Module):
  """Clips [b, t, h, w, c] -> logits [b, num_classes]; features: the pooled last stage.

  widths: one conv-BN-ReLU stage each; the first has spatial stride 2, the others are followed by
  max pooling, 2x2x2 (or 1x2x2 without temporal_pool).
  temporal_kernel: 3 for C3D's 3x3x3 kernels, 1 for a frame-wise 2-D net.
  """
  widths: Sequence[int] = (16, 32, 64)
  temporal_kernel: int = 3
  temporal_pool: bool = True
  dropout_rate: float = 0.2
  num_classes: int = 5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False):
    kernel = (self.temporal_kernel, 3, 3)
    x = common.conv_bn(x.astype(self.dtype), self.widths[0], kernel, train, self.dtype, ndim=3,
                       strides=(1, 2, 2))
    for width in self.widths[1:]:
      x = common.conv_bn(x, width, kernel, train, self.dtype, ndim=3)
      x = layers.max_pool(x, window=(2 if self.temporal_pool else 1, 2, 2))
    x = layers.dropout(layers.global_pool(x, 'avg'), self.dropout_rate, train)
    return common.classify(x, self.num_classes, return_features, self.dtype)


def intermediate_channels(inputs: int, outputs: int, t: int = 3, d: int = 3) -> int:
  """R(2+1)D's M_i: the spatial conv's outputs that give a 1xdxd + tx1x1 pair about the
  parameters of one txdxd convolution from `inputs` to `outputs` channels."""
  return (t * d * d * inputs * outputs) // (d * d * inputs + t * outputs)


def _conv2plus1d(x, features: int, train: bool, dtype, strides=(1, 1, 1)):
  """A (2+1)D convolution: 1x3x3 spatial (strided in h, w) -> BN -> ReLU -> 3x1x1 temporal
  (strided in t). Returns the temporal conv's output, before its batch norm."""
  middle = intermediate_channels(x.shape[-1], features)
  x = common.conv_bn(x, middle, (1, 3, 3), train, dtype, ndim=3, strides=(1, *strides[1:]))
  return layers.conv(features, (3, 1, 1), ndim=3, strides=(strides[0], 1, 1), padding='SAME',
                     use_bias=False, dtype=dtype)(x)


class R2Plus1DBlock(nn.Module):
  """Two (2+1)D convolutions with batch norm, plus the input (a 1x1x1 projection when the shape
  changes): [b, t, h, w, c] -> [b, t / s, h / s, w / s, features]."""
  features: int
  strides: tuple[int, int, int] = (1, 1, 1)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    shortcut = x
    if self.strides != (1, 1, 1) or x.shape[-1] != self.features:
      shortcut = common.conv_bn(x, self.features, 1, train, self.dtype, ndim=3,
                                strides=self.strides, relu=False)
    y = nn.relu(layers.batch_norm(train, dtype=self.dtype)(
        _conv2plus1d(x, self.features, train, self.dtype, self.strides)))
    y = layers.batch_norm(train, dtype=self.dtype)(_conv2plus1d(y, self.features, train,
                                                                self.dtype))
    return nn.relu(y + shortcut)


class R2Plus1DNet(nn.Module):
  """Clips [b, t, h, w, c] -> logits [b, num_classes]: a (2+1)D stem with spatial stride 2, then one
  residual block per width, the later ones striding 2 in time and space; global average pool."""
  widths: Sequence[int] = (16, 32, 64)
  dropout_rate: float = 0.2
  num_classes: int = 5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False):
    x = _conv2plus1d(x.astype(self.dtype), self.widths[0], train, self.dtype, strides=(1, 2, 2))
    x = nn.relu(layers.batch_norm(train, dtype=self.dtype)(x))
    for stage, width in enumerate(self.widths):
      x = R2Plus1DBlock(width, (1, 1, 1) if stage == 0 else (2, 2, 2), self.dtype)(x, train)
    x = layers.dropout(layers.global_pool(x, 'avg'), self.dropout_rate, train)
    return common.classify(x, self.num_classes, return_features, self.dtype)


C3DSmall = functools.partial(SpaceTimeNet, widths=(16, 32, 64))
# Widths chosen so that the frame-wise net has about C3DSmall's parameters (1x3x3 kernels hold a
# third of 3x3x3's weights).
FrameWise2D = functools.partial(SpaceTimeNet, widths=(24, 56, 112), temporal_kernel=1,
                                temporal_pool=False)
R2Plus1DSmall = functools.partial(R2Plus1DNet, widths=(16, 32, 64))

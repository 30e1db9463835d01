"""Blocks the families after ResNet share: convolution-norm-activation units, depthwise
convolutions, squeeze-and-excitation, the inverted residual, and layer norm over channels.

- Depthwise convolution: a grouped convolution with one group per channel, so each channel is
  filtered by its own k x k kernel (k*k*c weights instead of k*k*c*c); a 1x1 "pointwise"
  convolution then mixes channels. Together they factor an ordinary convolution (MobileNet,
  Howard et al. 2017).
- Squeeze-and-excitation (Hu et al. 2018): each channel is rescaled by a gate in (0, 1) computed
  from the whole map's channel means by a two-layer bottleneck, so the net re-weights its
  features per image.
- Inverted residual (MobileNetV2, Sandler et al. 2018): 1x1 expansion to t times the channels,
  a depthwise k x k, [squeeze-and-excitation,] a linear 1x1 projection back (no activation: a
  ReLU in the narrow space would destroy information), and a shortcut between the narrow ends
  when the shape allows. MobileNetV3 and EfficientNet's MBConv are this block with other
  activations, kernels and gates.
- Layer norm over channels (ConvNeXt): in convjax's channels-last layout, flax's LayerNorm over
  the last axis is exactly torchvision's LayerNorm2d, with no transposes.
"""
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from convjax.nn import layers


def make_divisible(value: float, divisor: int = 8) -> int:
  """Rounds a width to the nearest multiple of divisor, never below divisor nor more than 10%
  below value: the channel rule of MobileNet's and EfficientNet's reference code."""
  rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
  return rounded + divisor if rounded < 0.9 * value else rounded


class ConvNormAct(nn.Module):
  """conv k x k (stride, groups; 'HALF' padding, no bias) -> norm -> activation (None: none).
  [b, h, w, c] -> [b, h / strides, w / strides, features]. torchvision's Conv2dNormActivation."""
  features: int
  kernel_size: int
  norm: Callable[..., nn.Module]
  activation: Callable | None = nn.relu
  strides: int = 1
  groups: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = layers.conv2d(self.features, self.kernel_size, strides=self.strides, padding='HALF',
                      groups=self.groups, use_bias=False, dtype=self.dtype, name='conv')(x)
    return layers.norm_act(self.norm(name='norm'), self.activation, x)


class SqueezeExcite(nn.Module):
  """x * gate(expand(act(reduce(mean over h, w of x)))): [b, h, w, c] -> [b, h, w, c]; reduce and
  expand are 1x1 convolutions with bias, to `squeeze` channels and back."""
  squeeze: int
  activation: Callable = nn.relu
  gate: Callable = nn.sigmoid
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    s = jnp.mean(x, axis=(1, 2), keepdims=True)
    s = self.activation(layers.conv2d(self.squeeze, 1, dtype=self.dtype, name='reduce')(s))
    return x * self.gate(layers.conv2d(x.shape[-1], 1, dtype=self.dtype, name='expand')(s))


class InvertedResidual(nn.Module):
  """[expand 1x1 ->] depthwise k x k (stride) -> [squeeze-excite ->] project 1x1 (linear),
  + x when stride is 1 and the width is kept. [b, h, w, c] -> [b, h / strides, w / strides,
  features]. The expansion is skipped when `expanded` equals the input width."""
  features: int
  expanded: int
  norm: Callable[..., nn.Module]
  kernel_size: int = 3
  strides: int = 1
  activation: Callable = nn.relu6
  se_squeeze: int = 0  # 0: no squeeze-and-excitation.
  se_activation: Callable = nn.relu
  se_gate: Callable = nn.sigmoid
  drop_path_rate: float = 0.0  # Stochastic depth on the residual branch.
  train: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    unit = dict(norm=self.norm, dtype=self.dtype)
    y = x
    if self.expanded != x.shape[-1]:
      y = ConvNormAct(self.expanded, 1, activation=self.activation, name='expand', **unit)(y)
    y = ConvNormAct(self.expanded, self.kernel_size, activation=self.activation,
                    strides=self.strides, groups=self.expanded, name='depthwise', **unit)(y)
    if self.se_squeeze:
      y = SqueezeExcite(self.se_squeeze, self.se_activation, self.se_gate, self.dtype,
                        name='se')(y)
    y = ConvNormAct(self.features, 1, activation=None, name='project', **unit)(y)
    if self.strides == 1 and x.shape[-1] == self.features:
      return x + layers.drop_path(y, self.drop_path_rate, self.train)
    return y


def channel_layer_norm(dtype: Any = jnp.float32, **kwargs) -> nn.LayerNorm:
  """Layer norm over the channels of each position of [b, *spatial, c] (ConvNeXt's, epsilon
  1e-6): mean and variance over c alone, then a learned scale and shift per channel."""
  return nn.LayerNorm(epsilon=1e-6, dtype=dtype, **kwargs)

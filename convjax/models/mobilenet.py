"""MobileNets: networks of inverted residuals for phones, and EfficientNet, their scaled cousin.

What each introduced:
- MobileNetV2 (Sandler et al. 2018, "Inverted Residuals and Linear Bottlenecks"): blocks that
  expand a narrow input 6x, filter it depthwise, and project it back linearly, with shortcuts
  between the narrow ends (blocks.InvertedResidual). 3,504,872 parameters, about 300M
  multiply-adds at 224x224: an eighth of ResNet-50's.
- MobileNetV3 (Howard et al. 2019, "Searching for MobileNetV3"): the block found by
  architecture search per stage: 3x3 or 5x5 depthwise kernels, squeeze-and-excitation with a
  hard-sigmoid gate, and hard-swish, x * relu6(x + 3) / 6, a cheap swish, in the later stages;
  a lighter head (1x1 to 960 or 576, pooled, then a 1280- or 1024-unit hidden layer).
  Small 2,542,856 and large 5,483,032 parameters.
- EfficientNet (Tan & Le 2019): the MBConv block (the inverted residual with squeeze-and-
  excitation and swish, x * sigmoid(x)) in a base net found by search, B0 (5,288,548
  parameters), which compound scaling widens, deepens and enlarges to B1..B7. Stochastic depth
  rises linearly to 0.2 over the blocks.

Each is torchvision's layout, layer for layer, so torchvision's weights load
(torchvision_weights.py). Batch norm: epsilon 1e-5 (V2, EfficientNet), 1e-3 (V3, whose momentum
0.01 in PyTorch's convention is flax's 0.99).

Small images: stem_stride=1 keeps 28x28 or 32x32 inputs at full resolution through the stem
(models.create picks it below 64x64), so the net ends on a 2x2 map rather than 1x1.
"""
import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from convjax.models import blocks, common
from convjax.nn import layers

# MobileNetV2's Table 2: (expansion t, channels c, repeats n, first stride s).
V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
             (6, 160, 3, 2), (6, 320, 1, 1))

# MobileNetV3's Tables 1 and 2: (kernel, expanded, out, squeeze-excite, hard-swish, stride).
V3_LARGE = ((3, 16, 16, False, False, 1), (3, 64, 24, False, False, 2),
            (3, 72, 24, False, False, 1), (5, 72, 40, True, False, 2),
            (5, 120, 40, True, False, 1), (5, 120, 40, True, False, 1),
            (3, 240, 80, False, True, 2), (3, 200, 80, False, True, 1),
            (3, 184, 80, False, True, 1), (3, 184, 80, False, True, 1),
            (3, 480, 112, True, True, 1), (3, 672, 112, True, True, 1),
            (5, 672, 160, True, True, 2), (5, 960, 160, True, True, 1),
            (5, 960, 160, True, True, 1))
V3_SMALL = ((3, 16, 16, True, False, 2), (3, 72, 24, False, False, 2),
            (3, 88, 24, False, False, 1), (5, 96, 40, True, True, 2),
            (5, 240, 40, True, True, 1), (5, 240, 40, True, True, 1),
            (5, 120, 48, True, True, 1), (5, 144, 48, True, True, 1),
            (5, 288, 96, True, True, 2), (5, 576, 96, True, True, 1),
            (5, 576, 96, True, True, 1))

# EfficientNet-B0's Table 1: (expansion, kernel, first stride, out channels, repeats).
B0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
             (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))


class _Trunk:
  """What the three families' __call__ share: the batch norm, the stem, running the blocks and
  the head's 1x1 convolution, and the feature taps (the last map before each stride-2 block, and
  the head's map)."""

  def __init__(self, model, train: bool, strides: Sequence[int], feature_indices,
               epsilon: float = 1e-5, momentum: float = 0.9):
    self.norm = functools.partial(layers.batch_norm, train, dtype=model.dtype, epsilon=epsilon,
                                  momentum=momentum)
    self.taps = common.FeatureTaps(feature_indices, 1 + sum(s == 2 for s in strides))
    self.model = model

  def stem(self, x, width: int, activation: Callable):
    return blocks.ConvNormAct(width, 3, self.norm, activation, strides=self.model.stem_stride,
                              dtype=self.model.dtype, name='stem')(x)

  def body(self, x, residuals: Sequence[nn.Module], head_width: int, activation: Callable):
    """x [b, h, w, c] through the blocks and the head -> (its map, None), or (None, the
    requested feature maps) as soon as they are all in."""
    for block in residuals:
      if block.strides == 2 and self.taps.take(x):
        return None, self.taps.maps
      x = block(x)
    x = blocks.ConvNormAct(head_width, 1, self.norm, activation, dtype=self.model.dtype,
                           name='head')(x)
    return (None, self.taps.maps) if self.taps.take(x) else (x, None)


def _pooled_logits(model, x, train: bool, return_features: bool):
  """Global average pooling, dropout, the classifier: [b, h, w, c] -> [b, num_classes]."""
  x = layers.dropout(layers.global_pool(x), model.dropout_rate, train)
  return common.classify(x, model.num_classes, return_features, model.dtype)


class MobileNetV2(nn.Module):
  """[b, h, w, c] -> logits [b, num_classes]; features: the pooled 1280 channels."""
  stages: Sequence[tuple] = V2_STAGES
  num_classes: int = 1000
  stem_stride: int = 2
  dropout_rate: float = 0.2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False,
               feature_indices: Sequence[int] | str | None = None):
    settings = [(t, c, s if i == 0 else 1) for t, c, n, s in self.stages for i in range(n)]
    trunk = _Trunk(self, train, [s for *_, s in settings], feature_indices)
    x = trunk.stem(x, 32, nn.relu6)
    inputs = [32] + [c for _, c, _ in settings]
    residuals = [blocks.InvertedResidual(width, width_in * expansion, trunk.norm, strides=stride,
                                         dtype=self.dtype, name=f'block{index + 1}')
                 for index, ((expansion, width, stride), width_in)
                 in enumerate(zip(settings, inputs))]
    x, maps = trunk.body(x, residuals, 1280, nn.relu6)
    return maps if maps is not None else _pooled_logits(self, x, train, return_features)


class MobileNetV3(nn.Module):
  """[b, h, w, c] -> logits [b, num_classes]; features: the hidden layer's `last_width`."""
  settings: Sequence[tuple] = V3_LARGE
  last_width: int = 1280
  num_classes: int = 1000
  stem_stride: int = 2
  dropout_rate: float = 0.2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False,
               feature_indices: Sequence[int] | str | None = None):
    trunk = _Trunk(self, train, [s[-1] for s in self.settings], feature_indices,
                   epsilon=1e-3, momentum=0.99)
    x = trunk.stem(x, 16, nn.hard_swish)
    residuals = [blocks.InvertedResidual(
        width, expanded, trunk.norm, kernel_size=kernel, strides=stride,
        activation=nn.hard_swish if hard_swish else nn.relu,
        se_squeeze=blocks.make_divisible(expanded // 4) if se else 0,
        se_gate=nn.hard_sigmoid, dtype=self.dtype, name=f'block{index + 1}')
        for index, (kernel, expanded, width, se, hard_swish, stride) in enumerate(self.settings)]
    x, maps = trunk.body(x, residuals, 6 * self.settings[-1][2], nn.hard_swish)
    if maps is not None:
      return maps
    x = nn.hard_swish(layers.dense(self.last_width, dtype=self.dtype,
                                   name='hidden')(layers.global_pool(x)))
    x = layers.dropout(x, self.dropout_rate, train)
    return common.classify(x, self.num_classes, return_features, self.dtype)


class EfficientNet(nn.Module):
  """[b, h, w, c] -> logits [b, num_classes]; features: the pooled 1280 channels."""
  stages: Sequence[tuple] = B0_STAGES
  num_classes: int = 1000
  stem_stride: int = 2
  dropout_rate: float = 0.2
  drop_path_rate: float = 0.2  # Rises linearly from 0 at the first block (torchvision's rule).
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False,
               feature_indices: Sequence[int] | str | None = None):
    settings = [(stage, i, e, k, s if i == 0 else 1, c)
                for stage, (e, k, s, c, n) in enumerate(self.stages, 1) for i in range(n)]
    trunk = _Trunk(self, train, [s[4] for s in settings], feature_indices)
    x = trunk.stem(x, 32, nn.silu)
    inputs = [32] + [setting[-1] for setting in settings]
    residuals = [blocks.InvertedResidual(
        width, width_in * expansion, trunk.norm, kernel_size=kernel, strides=stride,
        activation=nn.silu, se_squeeze=max(1, width_in // 4), se_activation=nn.silu,
        drop_path_rate=self.drop_path_rate * number / len(settings), train=train,
        dtype=self.dtype, name=f'stage{stage}_block{index + 1}')
        for number, ((stage, index, expansion, kernel, stride, width), width_in)
        in enumerate(zip(settings, inputs))]
    x, maps = trunk.body(x, residuals, 4 * self.stages[-1][3], nn.silu)
    return maps if maps is not None else _pooled_logits(self, x, train, return_features)


MobileNetV3Large = functools.partial(MobileNetV3, settings=V3_LARGE, last_width=1280)
MobileNetV3Small = functools.partial(MobileNetV3, settings=V3_SMALL, last_width=1024)
EfficientNetB0 = EfficientNet

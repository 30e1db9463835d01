"""RegNet (Radosavovic et al. 2020, "Designing Network Design Spaces").

What RegNet introduced: instead of one searched network, a simple rule for a whole family.
Block widths grow linearly with depth, u_j = w_0 + w_a * j, and are then quantised in log space
to powers of w_m times w_0 (multiples of 8): blocks of equal width form a stage. Four numbers
(depth, w_0, w_a, w_m) and the group width g give the network (`stage_plan`).

Each block is ResNeXt's bottleneck with a bottleneck ratio of 1 (1x1 -> 3x3 grouped, g
channels per group, stride on the 3x3 -> 1x1, batch norm after each, + a 1x1 projection shortcut
where the shape changes, ReLU after the sum). RegNetY adds squeeze-and-excitation (squeeze to a
quarter of the block's input width) after the 3x3. Stem: 3x3/2 conv to 32 channels.

  regnet_x_400mf: depth 22, w_0 24, w_a 24.48, w_m 2.54, g 16: 5,495,976 parameters.
  regnet_y_400mf: depth 16, w_0 48, w_a 27.89, w_m 2.09, g 8, SE: 4,344,144 parameters.

torchvision's layout, layer for layer (torchvision_weights.py).
"""
import functools
import math
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from convjax.models import blocks, common
from convjax.nn import layers


def stage_plan(depth: int, w_0: int, w_a: float, w_m: float, group_width: int
               ) -> list[tuple[int, int, int]]:
  """The quantised linear rule -> (blocks, width, group width) per stage."""
  continuous = np.arange(depth) * w_a + w_0
  steps = np.round(np.log(continuous / w_0) / math.log(w_m))
  widths = (np.round(w_0 * np.power(w_m, steps) / 8) * 8).astype(int)
  stages = []
  for width in widths:
    if stages and stages[-1][1] == width:
      stages[-1][0] += 1
    else:
      stages.append([1, int(width)])
  # A stage narrower than its group width has one group; widths are whole groups.
  plan = []
  for count, width in stages:
    group = min(group_width, width)
    plan.append((count, blocks.make_divisible(width, group), group))
  return plan


class RegNetBlock(nn.Module):
  """[b, h, w, c] -> [b, h / strides, w / strides, width]: a, b (grouped), [se,] c, + shortcut."""
  width: int
  group_width: int
  strides: int
  norm: Any
  se_ratio: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    unit = functools.partial(blocks.ConvNormAct, norm=self.norm, dtype=self.dtype)
    shortcut = x
    if self.strides != 1 or x.shape[-1] != self.width:
      shortcut = unit(self.width, 1, activation=None, strides=self.strides, name='proj')(x)
    y = unit(self.width, 1, name='a')(x)
    y = unit(self.width, 3, strides=self.strides, groups=self.width // self.group_width,
             name='b')(y)
    if self.se_ratio:
      y = blocks.SqueezeExcite(int(round(self.se_ratio * x.shape[-1])), dtype=self.dtype,
                               name='se')(y)
    return nn.relu(shortcut + unit(self.width, 1, activation=None, name='c')(y))


class RegNet(nn.Module):
  """[b, h, w, c] -> logits [b, num_classes]; features: the pooled last stage."""
  depth: int
  w_0: int
  w_a: float
  w_m: float
  group_width: int
  se_ratio: float = 0.0
  num_classes: int = 1000
  stem_stride: int = 2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False,
               feature_indices: Sequence[int] | str | None = None):
    norm = functools.partial(layers.batch_norm, train, dtype=self.dtype)
    plan = stage_plan(self.depth, self.w_0, self.w_a, self.w_m, self.group_width)
    # Taps: the stem, then each stage's output.
    taps = common.FeatureTaps(feature_indices, 1 + len(plan))
    x = blocks.ConvNormAct(32, 3, norm, strides=self.stem_stride, dtype=self.dtype,
                           name='stem')(x)
    if taps.take(x):
      return taps.maps
    for stage, (count, width, group_width) in enumerate(plan, 1):
      for index in range(count):
        x = RegNetBlock(width, group_width, 2 if index == 0 else 1, norm, self.se_ratio,
                        self.dtype, name=f'stage{stage}_block{index + 1}')(x)
      if taps.take(x):
        return taps.maps
    return common.classify(layers.global_pool(x), self.num_classes, return_features, self.dtype)


RegNetX400MF = functools.partial(RegNet, depth=22, w_0=24, w_a=24.48, w_m=2.54, group_width=16)
RegNetY400MF = functools.partial(RegNet, depth=16, w_0=48, w_a=27.89, w_m=2.09, group_width=8,
                                 se_ratio=0.25)

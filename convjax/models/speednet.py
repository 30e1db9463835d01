"""SpeedNet: convjax's network for the Fashion-MNIST speed run (configs/fashion_mnist_speedrun.py).

Not a published architecture: a small, wide-early network designed for the most accuracy per
second of CPU training, after the CIFAR-10 speed-run literature, Page 2018 ("How to train your
ResNet", the DAWNBench ResNet-9) and Jordan 2024 ("94% on CIFAR-10 in 3.29 seconds", airbench):

  stem   conv 3x3, 24 maps, BN, GELU                           28x28
  block  conv 3x3 -> max pool 2 -> BN -> GELU -> conv 3x3 -> BN -> GELU, widths 32, 64, 128
                                                               -> 14x14, 7x7, 3x3
  head   global max pool, linear classifier

What it takes from them: few, wide layers, with pooling straight after the first conv of each
block, so that most convolutions run at a quarter of the resolution (airbench's ConvGroup);
batch norm without a learned scale (the scale is redundant before GELU and the next conv's
weights, and dropping it lets a high learning rate train the shift alone); GELU; a global max
pool. The recipe in the config supplies the rest: a large batch with a one-cycle schedule,
label smoothing, weight EMA, and flip-and-translate augmentation with flip test-time
augmentation. Not taken: airbench's frozen patch-whitening first layer, which needs the
training set's statistics at initialisation, and its lookahead.

On 28x28x1 and 10 classes: 294,586 parameters and 35,509,504 FLOPs (17.8M multiply-adds) per
image.
"""
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from convjax.nn import layers
from convjax.models import common


class SpeedNet(nn.Module):
  """[b, h, w, c] -> logits [b, num_classes]; features: the max-pooled last maps [b, widths[-1]]."""
  num_classes: int = 10
  stem_width: int = 24
  widths: Sequence[int] = (32, 64, 128)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False,
               feature_indices: Sequence[int] | str | None = None):
    conv = functools.partial(layers.conv2d, kernel_size=3, padding='HALF', use_bias=False,
                             dtype=self.dtype)
    norm = functools.partial(layers.batch_norm, train, self.dtype, use_scale=False)
    taps = common.FeatureTaps(feature_indices, 1 + len(self.widths))  # Stem, then each stage.
    x = layers.gelu(norm()(conv(self.stem_width)(x)))
    if taps.take(x):
      return taps.maps
    for width in self.widths:
      x = layers.gelu(norm()(layers.max_pool(conv(width)(x), window=2)))
      x = layers.gelu(norm()(conv(width)(x)))
      if taps.take(x):
        return taps.maps
    return common.classify(layers.global_pool(x, 'max'), self.num_classes, return_features,
                           self.dtype)

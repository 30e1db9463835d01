"""AlexNet (Krizhevsky et al. 2012) and ZFNet (Zeiler & Fergus 2013): five convs, three FC layers.

What AlexNet introduced: ReLU instead of tanh (6x faster training), training split over two GPUs,
local response normalisation (-1.4 points top-1), overlapping max pooling (window 3, stride 2;
-0.4 points) and dropout 0.5 in the first two FC layers against overfitting 60M parameters.

  alexnet_2012  the paper: conv 96 11x11/4 -> LRN -> pool; conv 256 5x5 -> LRN -> pool;
                conv 384, 384, 256 3x3 -> pool; FC 4096, 4096, classes. Two towers: conv2, conv4
                and conv5 see only their own GPU's half of the maps, which is groups=2.
                LRN: k=2, n=5, alpha=1e-4, beta=0.75. 60,965,224 parameters at 224x224x3.
  alexnet       the single-tower variant whose ImageNet weights are common ("One weird trick",
                Krizhevsky 2014; torchvision): 64, 192, 384, 256, 256 filters, no groups, no LRN.
                61,100,840 parameters at 224x224x3.
  zfnet         what visualising AlexNet's features taught Zeiler & Fergus: a 7x7/2 first layer
                (11x11/4 aliased and left dead filters), a stride-2 conv2, dense (single-GPU)
                connections, and 384, 384, 256 filters in conv3-5.

Small-image stem: for inputs below 64x64, models.create makes conv1 stride 1 (AlexNet: 5x5, ZFNet:
7x7) and conv2 stride 1, so a 28x28 image reaches the classifier as a 2x2 or 3x3 map.
"""
import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from convjax.nn import layers
from convjax.models import common


class AlexNet(nn.Module):
  """[b, h, w, c] -> logits [b, num_classes]; features: the second FC layer [b, head_width].

  conv1 and conv2 are (kernel, stride, padding); pool_padding is one entry per max pool.
  """
  num_classes: int = 1000
  widths: Sequence[int] = (96, 256, 384, 384, 256)
  groups: Sequence[int] = (1, 2, 1, 2, 2)
  conv1: tuple[int, int, int] = (11, 4, 2)
  conv2: tuple[int, int, int] = (5, 1, 2)
  pool_padding: Sequence[str] = ('VALID', 'VALID', 'VALID')
  lrn: bool = True
  head_width: int = 4096
  dropout_rate: float = 0.5
  activation: Callable = nn.relu
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False,
               feature_indices: Sequence[int] | str | None = None):
    shapes = [self.conv1, self.conv2, (3, 1, 1), (3, 1, 1), (3, 1, 1)]
    pools = iter(self.pool_padding)
    # Taps: conv1's and conv2's activations (before their pools), conv5's, and the last pool's.
    taps = common.FeatureTaps(feature_indices, 4)
    for index, (filters, groups, (kernel, stride, padding)) in enumerate(
        zip(self.widths, self.groups, shapes)):
      x = layers.conv2d(filters, kernel, strides=stride, padding=padding, groups=groups,
                        dtype=self.dtype)(x)
      x = self.activation(x)
      if self.lrn and index < 2:
        x = layers.local_response_norm(x, size=5, k=2.0, alpha=1e-4, beta=0.75)
      if index in (0, 1, 4):  # Overlapping pooling: 3x3 windows every 2 pixels.
        if taps.take(x):
          return taps.maps
        x = layers.max_pool(x, window=3, strides=2, padding=next(pools))
    if taps.take(x):
      return taps.maps
    x = common.hidden_layers(layers.flatten(x), self.head_width, 2, self.activation,
                             self.dropout_rate, train, self.dtype)
    return common.classify(x, self.num_classes, return_features, self.dtype)


AlexNet2012 = AlexNet
AlexNetOneTower = functools.partial(AlexNet, widths=(64, 192, 384, 256, 256), groups=(1,) * 5,
                                    lrn=False)
# Fig. 3 of the ZFNet paper: 224 -> 110 -> pool 55 -> 26 -> pool 13 -> 13 -> pool 6. The first two
# pools keep a partial window (Caffe's rounding) to give 55 and 13.
ZFNet = functools.partial(AlexNet, widths=(96, 256, 384, 384, 256), groups=(1,) * 5,
                          conv1=(7, 2, 1), conv2=(5, 2, 0), pool_padding=('CEIL', 'CEIL', 'VALID'))


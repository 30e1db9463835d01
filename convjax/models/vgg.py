"""VGG (Simonyan & Zisserman 2014, "Very Deep Convolutional Networks for Large-Scale Image Recognition").

What VGG introduced: depth from uniform stacks of small 3x3 convolutions (two 3x3 see as far as one
5x5 with fewer parameters and an extra non-linearity), with 2x2 max pooling between five stages of
64, 128, 256, 512 and 512 filters, then three fully connected layers (4096, 4096, classes) with
dropout 0.5 after each hidden one, as torchvision lays them out.

  config   convs per stage   registry
  A        1 1 2 2 2         vgg11, vgg11_bn
  B        2 2 2 2 2         vgg13, vgg13_bn
  D        2 2 3 3 3         vgg16, vgg16_bn
  E        2 2 4 4 4         vgg19, vgg19_bn

The `_bn` variants put batch norm between each conv and its ReLU (not in the paper; torchvision's).

Small inputs: pooling keeps a final partial window ('CEIL'), which changes nothing at 224x224 or
32x32 (every size is even) and lets 28x28 inputs reach the classifier as 1x1x512 rather than 0x0.
The classifier flattens whatever map arrives (7x7x512 at 224). For inputs below 64x64,
models.create narrows the hidden layers to 512 (head_width), the head of the usual CIFAR VGG.
"""
import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from convjax.nn import layers
from convjax.models import common


class VGG(nn.Module):
  """[b, h, w, c] -> logits [b, num_classes]; features: the second hidden FC layer [b, head_width]."""
  stage_sizes: Sequence[int]
  num_classes: int = 1000
  widths: Sequence[int] = (64, 128, 256, 512, 512)
  batch_norm: bool = False
  head_width: int = 4096
  dropout_rate: float = 0.5
  activation: Callable = nn.relu
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False,
               feature_indices: Sequence[int] | str | None = None):
    # Taps: each block's last activations (before its pool), then the last pool's output.
    taps = common.FeatureTaps(feature_indices, len(self.stage_sizes) + 1)
    for num_convs, filters in zip(self.stage_sizes, self.widths):
      for _ in range(num_convs):
        # The _bn convs keep their (redundant) biases, as torchvision's do: its published
        # parameter counts include them.
        x = layers.conv2d(filters, 3, padding=1, dtype=self.dtype)(x)
        x = (layers.norm_act(layers.batch_norm(train, dtype=self.dtype), self.activation, x)
             if self.batch_norm else self.activation(x))
      if taps.take(x):
        return taps.maps
      x = layers.max_pool(x, window=2, padding='CEIL')
    if taps.take(x):
      return taps.maps
    x = common.hidden_layers(layers.flatten(x), self.head_width, 2, self.activation,
                             self.dropout_rate, train, self.dtype)
    return common.classify(x, self.num_classes, return_features, self.dtype)


_A, _B, _D, _E = (1, 1, 2, 2, 2), (2, 2, 2, 2, 2), (2, 2, 3, 3, 3), (2, 2, 4, 4, 4)
VGG11 = functools.partial(VGG, stage_sizes=_A)
VGG13 = functools.partial(VGG, stage_sizes=_B)
VGG16 = functools.partial(VGG, stage_sizes=_D)
VGG19 = functools.partial(VGG, stage_sizes=_E)

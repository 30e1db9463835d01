"""GoogLeNet, Inception v1 (Szegedy et al. 2014, "Going Deeper with Convolutions"), as published.

What it introduced: the Inception module, parallel 1x1, 3x3 and 5x5 convolutions and a pooled
branch concatenated along channels, with 1x1 "reduce" convs cutting the channels before the
expensive 3x3 and 5x5 ones; 22 layers for 1/12 of AlexNet's parameters, global average pooling
instead of big FC layers, and auxiliary classifiers on 4a and 4d to help gradients reach early layers.

Table 1 of the paper, row by row; each Inception is
(#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj):

  conv 7x7/2 64 -> max pool 3x3/2 -> LRN -> conv 1x1 64 -> conv 3x3 192 -> LRN -> max pool 3x3/2
  3a (64, 96, 128, 16, 32, 32)      3b (128, 128, 192, 32, 96, 64)      max pool 3x3/2
  4a (192, 96, 208, 16, 48, 64)     4b (160, 112, 224, 24, 64, 64)      4c (128, 128, 256, 24, 64, 64)
  4d (112, 144, 288, 32, 64, 64)    4e (256, 160, 320, 32, 128, 128)    max pool 3x3/2
  5a (256, 160, 320, 32, 128, 128)  5b (384, 192, 384, 48, 128, 128)
  global average pool -> dropout 0.4 -> linear

As published: 5x5 convolutions in the third branch (torchvision uses 3x3 there, for compatibility
with old weights, so its 6,624,904 parameters do not apply), convolutions with bias and ReLU, and
the stem's LRN with the reference Caffe model's settings (size 5, k=1, alpha 1e-4 / 5, beta 0.75).
Max pools keep a final partial window (Caffe's rounding: 112 -> 56 -> 28 -> 14 -> 7).

Auxiliary classifiers (aux_logits=True): avg pool 5x5/3 -> conv 1x1 128 -> FC 1024 -> dropout 0.7
-> linear, on the outputs of 4a and 4d, in training only. Their logits are sown into the
'intermediates' collection as 'aux_logits'; the train step adds them to the loss with weight
config.aux_loss_weight (0.3 in the paper).

googlenet_bn: batch norm after every conv (conv bias dropped), and no LRN, which batch norm replaces.

googlenet_torchvision: torchvision's GoogLeNet, whose ImageNet weights convjax.models.torchvision_weights imports.
It is googlenet_bn with three differences from the paper, kept for compatibility with weights
ported from an older implementation: 3x3 convolutions in the third ("5x5") branch, batch-norm
epsilon 1e-3, and a 2x2/2 max pool (ceil) before inception 5a; its final dropout is 0.2.
6,624,904 parameters at 224x224x3 without the auxiliary heads, as torchvision counts.
transform_input=True rescales ImageNet-normalised input to the [-1, 1] range those ported weights
expect, as torchvision does when it loads them. Its auxiliary heads pool 5x5/3 where
torchvision's pool to 4x4 adaptive bins: at 224x224 both give 4x4 maps, and only training runs them.
Small-image stem: for inputs below 64x64, the stem's 7x7/2 conv and first two max pools become a
3x3/1 conv, so a 32x32 image reaches inception 3a at 32x32 instead of 4x4.
"""
import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from convjax import errors
from convjax.nn import layers
from convjax.models import common

ModuleDef = Any

INCEPTION_3 = ((64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64))
INCEPTION_4 = ((192, 96, 208, 16, 48, 64), (160, 112, 224, 24, 64, 64), (128, 128, 256, 24, 64, 64),
               (112, 144, 288, 32, 64, 64), (256, 160, 320, 32, 128, 128))
INCEPTION_5 = ((256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128))


# The per-channel mean and std that torchvision's ImageNet weights expect their inputs normalised
# by; GoogLeNet's ported weights undo it (`transform_input`). A property of the weights, not of
# any dataset convjax loads.
TORCHVISION_INPUT_MEAN, TORCHVISION_INPUT_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _to_unit_range(x: jnp.ndarray) -> jnp.ndarray:
  """Returns [b, h, w, 3] normalised by TORCHVISION_INPUT_MEAN and _STD as (p - 0.5) / 0.5."""
  mean = jnp.asarray(TORCHVISION_INPUT_MEAN, x.dtype)
  std = jnp.asarray(TORCHVISION_INPUT_STD, x.dtype)
  return (x * std + mean - 0.5) / 0.5


class ConvUnit(nn.Module):
  """conv -> (batch norm) -> activation, the unit every GoogLeNet layer is made of."""
  features: int
  kernel_size: int
  strides: int = 1
  batch_norm: bool = False
  activation: Callable = nn.relu
  dtype: Any = jnp.float32

  bn_epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x, train: bool):
    x = layers.conv2d(self.features, self.kernel_size, strides=self.strides,
                      padding='HALF', use_bias=not self.batch_norm,
                      dtype=self.dtype)(x)
    if self.batch_norm:
      x = layers.batch_norm(train, dtype=self.dtype, epsilon=self.bn_epsilon)(x)
    return self.activation(x)


class Inception(nn.Module):
  """Four parallel branches concatenated on channels: [b, h, w, c] -> [b, h, w, sum of outputs].

  widths: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj), Table 1's columns.
  """
  widths: Sequence[int]
  unit: ModuleDef
  third_branch_kernel: int = 5  # The paper's 5x5; torchvision's 3x3.

  @nn.compact
  def __call__(self, x, train: bool):
    n1, r3, n3, r5, n5, proj = self.widths
    branch1 = self.unit(n1, 1)(x, train)
    branch3 = self.unit(n3, 3)(self.unit(r3, 1)(x, train), train)
    branch5 = self.unit(n5, self.third_branch_kernel)(self.unit(r5, 1)(x, train), train)
    pooled = layers.max_pool(x, window=3, strides=1, padding=1)
    return jnp.concatenate([branch1, branch3, branch5, self.unit(proj, 1)(pooled, train)], -1)


AUX_WIDTH = 128  # The auxiliary heads' 1x1 conv.


class AuxClassifier(nn.Module):
  """The auxiliary head on 4a and 4d: [b, 14, 14, c] -> logits [b, num_classes]."""
  num_classes: int
  unit: ModuleDef
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    x = layers.avg_pool(x, window=5, strides=3, padding='CEIL')
    x = layers.flatten(self.unit(AUX_WIDTH, 1)(x, train))
    x = nn.relu(layers.dense(1024, dtype=self.dtype)(x))
    x = layers.dropout(x, 0.7, train)
    return layers.dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)


class GoogLeNet(nn.Module):
  """[b, h, w, c] -> logits [b, num_classes]; features: the pooled [b, 1024]."""
  num_classes: int = 1000
  # Table 1's Inception rows for stages 3, 4 and 5; a max pool sits between stages.
  stages: Sequence[Sequence[Sequence[int]]] = (INCEPTION_3, INCEPTION_4, INCEPTION_5)
  batch_norm: bool = False
  stem: str = 'imagenet'  # 'imagenet' or 'small'.
  aux_logits: bool = False
  dropout_rate: float = 0.4
  bn_epsilon: float = 1e-5
  third_branch_kernel: int = 5  # Each Inception's third branch: the paper's 5x5.
  last_pool_window: int = 3  # The max pool before stage 5: the paper's 3x3/2.
  transform_input: bool = False  # ImageNet-normalised input -> [-1, 1] (torchvision's weights).
  activation: Callable = nn.relu
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False,
               feature_indices: Sequence[int] | str | None = None):
    unit = functools.partial(ConvUnit, batch_norm=self.batch_norm, activation=self.activation,
                             bn_epsilon=self.bn_epsilon, dtype=self.dtype)
    pool = functools.partial(layers.max_pool, window=3, strides=2, padding='CEIL')
    lrn = (lambda y: y) if self.batch_norm else functools.partial(
        layers.local_response_norm, size=5, k=1.0, alpha=1e-4 / 5, beta=0.75)
    # Taps: conv1 (ImageNet stem only, before its pool), conv3 (before its pool), each stage.
    imagenet_stem = self.stem == 'imagenet'
    taps = common.FeatureTaps(feature_indices, len(self.stages) + 1 + imagenet_stem)
    if self.transform_input:
      x = _to_unit_range(x)
    if imagenet_stem:
      x = unit(64, 7, strides=2)(x, train)
      if taps.take(x):
        return taps.maps
      x = lrn(pool(x))
    elif self.stem == 'small':
      x = unit(64, 3)(x, train)
    else:
      raise errors.InvalidValueError(
          f"unknown stem '{self.stem}'; valid stems are: imagenet, small")
    x = lrn(unit(192, 3)(unit(64, 1)(x, train), train))
    if taps.take(x):
      return taps.maps
    if imagenet_stem:
      x = pool(x)
    for stage, rows in enumerate(self.stages):
      if stage > 0:
        last = stage == len(self.stages) - 1
        x = layers.max_pool(x, window=self.last_pool_window if last else 3, strides=2,
                            padding='CEIL')
      for index, widths in enumerate(rows):
        # Auxiliary heads read the outputs of the middle stage's first and next-to-last
        # modules: 4a and 4d.
        # Evaluation skips them; init runs them (in either mode) to create their parameters.
        if (self.aux_logits and stage == 1 and index in (1, len(rows) - 1) and
            (train or self.is_initializing()) and feature_indices is None):
          aux = AuxClassifier(self.num_classes, unit, self.dtype, name=f'aux_{index}')(x, train)
          if train:
            self.sow('intermediates', 'aux_logits', aux)
        x = Inception(widths, unit, self.third_branch_kernel)(x, train)
      if taps.take(x):
        return taps.maps
    x = layers.dropout(layers.global_pool(x), self.dropout_rate, train)
    return common.classify(x, self.num_classes, return_features, self.dtype)

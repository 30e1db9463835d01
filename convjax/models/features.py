"""Multi-scale features: every image backbone's intermediate maps, chosen by index.

The contract follows timm's `features_only`: a backbone's tap points are the last map at each
resolution, numbered from the input (negative indices count from the end), and their reductions
(input pixels per map pixel) never decrease. ResNet-50 at 224x224 gives reductions 2, 4, 8, 16, 32
with 64, 256, 512, 1024, 2048 channels. The last map is the one the classifier head reads.

  maps = model.apply(variables, x, train=False, feature_indices=(1, 2, 3, 4))
  info = features.feature_info('resnet50')

A backbone returns as soon as it has the maps it was asked for, so later stages are neither built
(at init) nor computed.
"""
import dataclasses
import functools
import inspect
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from convjax import errors
from convjax import models

# How much larger the second input is when reductions are measured (see feature_info): a multiple
# of every backbone's largest reduction, so each map grows by a whole number of pixels.
_PROBE_GROWTH = 64


@dataclasses.dataclass(frozen=True)
class FeatureInfo:
  """One tap point: its index, its channels, and its reduction (stride) from the input."""
  index: int
  channels: int
  reduction: int


def _takes_feature_indices(name: str) -> bool:
  constructor = models.get_spec(name).constructor
  module = constructor.func if isinstance(constructor, functools.partial) else constructor
  return 'feature_indices' in inspect.signature(module.__call__).parameters


def backbones() -> list[str]:
  """The registry's models that return multi-scale features: its image models whose __call__
  takes `feature_indices` (all of convjax's own)."""
  return [name for name in models.list_models()
          if models.get_spec(name).modality == 'image' and _takes_feature_indices(name)]


def check_backbone(name: str) -> None:
  """Raises a one-sentence error unless `name` is a registered model with features."""
  models.get_spec(name)  # An unknown name gets the registry's own message.
  if name not in backbones():
    raise errors.InvalidValueError(
        f"model '{name}' ({models.get_spec(name).modality}) has no multi-scale image features; "
        f"backbones with features are: {', '.join(backbones())}")


def feature_shapes(module: nn.Module, input_shape: Sequence[int],
                   indices: Sequence[int] | str = 'all') -> list[tuple[int, ...]]:
  """The shapes [1, h, w, c] of the maps at `indices` for one input [h, w, c], by
  `jax.eval_shape`: nothing is computed."""
  def maps(x):
    variables = module.init(jax.random.key(0), x, train=False, feature_indices=indices)
    return module.apply(variables, x, train=False, feature_indices=indices)

  x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
  return [tuple(m.shape) for m in jax.eval_shape(maps, x)]


def feature_info(name: str, input_shape: Sequence[int] | None = None) -> list[FeatureInfo]:
  """Channels and reduction of every tap point of registry model `name`, for inputs of
  `input_shape` [h, w, c] (the model's native shape when None), which also picks the stem.

  A reduction is measured, not declared: the maps of an input `_PROBE_GROWTH` pixels larger grow
  by `_PROBE_GROWTH / reduction` pixels, whatever the padding or window arithmetic.
  """
  check_backbone(name)
  input_shape = tuple(input_shape or models.get_spec(name).input_shape)
  module = models.create(name, input_shape=input_shape)
  larger = (input_shape[0] + _PROBE_GROWTH, input_shape[1] + _PROBE_GROWTH, input_shape[2])
  small, large = feature_shapes(module, input_shape), feature_shapes(module, larger)
  return [FeatureInfo(index, a[-1], round(_PROBE_GROWTH / (b[1] - a[1])))
          for index, (a, b) in enumerate(zip(small, large))]

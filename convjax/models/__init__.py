"""The model registry: every architecture convjax knows, by name.

Adding a model is one file in this package (a Flax module taking `num_classes`, `dtype` and
`train`) plus one entry in `_REGISTRY` below.
"""
import dataclasses
import fnmatch
from typing import Any, Callable

import flax.linen as nn

from convjax.models import lenet


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """How to build a model and what it expects natively.

  Attributes:
    constructor: a Flax module class (or a functools.partial of one).
    input_shape: native input (height, width, channels).
    num_classes: native number of classes.
  """
  constructor: Callable[..., nn.Module]
  input_shape: tuple[int, int, int]
  num_classes: int


_REGISTRY: dict[str, ModelSpec] = {
    'lenet5': ModelSpec(lenet.LeNet5, input_shape=(28, 28, 1), num_classes=10),
}


class UnknownModelError(ValueError):
  """A model name that is not in the registry."""


def list_models(pattern: str = '*') -> list[str]:
  """Sorted registry names matching an fnmatch pattern such as 'resnet*'."""
  return sorted(name for name in _REGISTRY if fnmatch.fnmatchcase(name, pattern))


def get_spec(name: str) -> ModelSpec:
  """The registry entry for `name`; raises UnknownModelError listing the valid names."""
  try:
    return _REGISTRY[name]
  except KeyError:
    raise UnknownModelError(
        f"unknown model '{name}'; valid models are: {', '.join(list_models())}") from None


def create(name: str, num_classes: int | None = None, **overrides: Any) -> nn.Module:
  """Builds the Flax module registered as `name`.

  Args:
    name: a registry name, see `list_models()`.
    num_classes: classifier width; the model's native number when None.
    **overrides: other module fields, e.g. `dtype=jnp.bfloat16`.
  Returns:
    An unbound module, used as `module.init(rng, x, train=False)` and
    `module.apply(variables, x, train=...)` with x of shape [batch, height, width, channels].
  """
  spec = get_spec(name)
  return spec.constructor(num_classes=num_classes or spec.num_classes, **overrides)

"""Whether a model takes an input shape, found by tracing it abstractly (jax.eval_shape).

A model whose input is too small for its strides and pools would compute an empty feature map
somewhere inside. `check` finds the first such layer before any work and names it; `trace` is the
same walk with a function around every module call, on which the layer table (analysis.summary)
is built.
"""
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from convjax import errors


class InputShapeError(errors.UserError, ValueError):
  """An input the model cannot take; the message names the layer whose output would be empty."""


# wrap(module, path, args, proceed) around each module call: proceed() makes the call, checks it,
# and returns its output, which wrap returns. path is the module's path in the parameter tree.
Wrap = Callable[[nn.Module, str, tuple, Callable[[], Any]], Any]


def abstract_init(model: nn.Module, input_shape: tuple[int, ...]) -> dict:
  """Returns the variables model.init creates for one image of input_shape (*spatial, c), as
  jax.ShapeDtypeStruct leaves: shapes only, no memory and no computation."""
  return jax.eval_shape(lambda: model.init(
      jax.random.PRNGKey(0), jnp.zeros((1,) + tuple(input_shape)), train=False))


def trace(model: nn.Module, input_shape: tuple[int, ...], wrap: Wrap | None = None) -> dict:
  """Runs `abstract_init` with wrap(module, path, args, proceed) around each module call, in call
  order (see `Wrap`); returns the abstract variables.

  Raises InputShapeError naming the first layer whose input or output map would be empty, or when
  the model rejects the shape itself (a ValueError or TypeError from flax or the model).
  """
  def interceptor(next_fun, args, kwargs, context):
    if context.method_name != '__call__':
      return next_fun(*args, **kwargs)
    module = context.module
    path = '/'.join(module.scope.path) if module.scope else type(module).__name__
    if args and _is_empty(args[0]):
      raise InputShapeError(f'the input to layer {path} ({type(module).__name__}) would be empty: '
                            f'{_shape(args[0])}; the input image is too small for this model')

    def proceed():
      output = next_fun(*args, **kwargs)
      main = output[0] if isinstance(output, tuple) else output
      if _is_empty(main):
        raise InputShapeError(
            f'layer {path} ({type(module).__name__}) would output an empty map: '
            f'{_shape(args[0])} -> {_shape(main)}; the input image is too small for this model')
      return output
    return wrap(module, path, args, proceed) if wrap else proceed()

  try:
    with nn.intercept_methods(interceptor):
      return abstract_init(model, input_shape)
  except InputShapeError:
    raise
  except (ValueError, TypeError) as e:
    raise InputShapeError(f'{type(model).__name__} cannot take input {tuple(input_shape)}: {e}') from e


def check(model: nn.Module, input_shape: tuple[int, ...]) -> None:
  """Raises InputShapeError, naming the layer, when the model cannot take input_shape (h, w, c)."""
  trace(model, input_shape)


def _is_empty(value) -> bool:
  return hasattr(value, 'shape') and len(value.shape) > 1 and 0 in value.shape[1:]


def _shape(x) -> str:
  return 'x'.join(str(d) for d in x.shape[1:])

"""Looking inside a model without running it: layer table, parameter count, FLOPs, input checks.

Everything here traces the model abstractly (jax.eval_shape), so even ResNet-152 at 224x224 costs
a second of tracing and no memory.

FLOP convention: 1 multiply-add = 2 FLOPs, counted layer by layer over the convolutions and fully
connected layers (the multiply-adds of the layers that hold weights; pooling, normalisation and
activations are not counted). This is the convention behind published "GMACs" figures, doubled.
"""
import dataclasses
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class InputShapeError(ValueError):
  """An input the model cannot take; the message names the layer whose output would be empty."""


@dataclasses.dataclass(frozen=True)
class Layer:
  """One module call: its path in the parameter tree, type, output shape (batch of 1), own
  parameter count (for leaf layers) and multiply-adds per image (conv and dense layers)."""
  path: str
  kind: str
  output_shape: tuple[int, ...]
  params: int
  multiply_adds: int


def _size(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _multiply_adds(module: nn.Module, output: Any) -> int:
  """Per-image multiply-adds of one call of a weight layer; 0 for anything else."""
  if hasattr(module, 'multiply_adds'):
    return module.multiply_adds(output.shape)
  if isinstance(module, (nn.Conv, nn.Dense)):
    kernel = module.variables['params']['kernel']
    # Each output element costs one multiply-add per kernel entry feeding it (per group).
    return int(np.prod(output.shape[1:])) * int(np.prod(kernel.shape[:-1]))
  return 0


def _is_empty(value) -> bool:
  return hasattr(value, 'shape') and len(value.shape) > 1 and 0 in value.shape[1:]


def layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[Layer]:
  """Every module call of model.init on one image of `input_shape` (h, w, c), in call order.

  Raises InputShapeError when a layer's input or output would be empty.
  """
  calls = []

  def interceptor(next_fun, args, kwargs, context):
    if context.method_name != '__call__':
      return next_fun(*args, **kwargs)
    module = context.module
    path = '/'.join(module.scope.path) if module.scope else type(module).__name__
    if args and _is_empty(args[0]):
      raise InputShapeError(f'the input to layer {path} ({type(module).__name__}) would be empty: '
                            f'{_shape(args[0])}; the input image is too small for this model')
    output = next_fun(*args, **kwargs)
    main = output[0] if isinstance(output, tuple) else output
    if _is_empty(main):
      raise InputShapeError(
          f'layer {path} ({type(module).__name__}) would output an empty map: '
          f'{_shape(args[0])} -> {_shape(main)}; the input image is too small for this model')
    # A module's own parameters are the arrays at its level; its children's sit in sub-dicts.
    own_params = sum(_size(v) for v in module.variables.get('params', {}).values()
                     if not isinstance(v, Mapping))
    if path:  # The model itself is not one of its layers.
        calls.append(Layer(path, type(module).__name__, tuple(main.shape[1:]), own_params,
                         _multiply_adds(module, main)))
    return output

  try:
    with nn.intercept_methods(interceptor):
      _abstract_init(model, input_shape)
  except InputShapeError:
    raise
  except (ValueError, TypeError) as e:
    raise InputShapeError(f'{type(model).__name__} cannot take input {tuple(input_shape)}: {e}') from e
  return calls


def _shape(x) -> str:
  return 'x'.join(str(d) for d in x.shape[1:])


def _abstract_init(model: nn.Module, input_shape: tuple[int, ...]) -> dict:
  """The variables model.init would create for one image of input_shape, as shapes only."""
  return jax.eval_shape(lambda: model.init(
      jax.random.PRNGKey(0), jnp.zeros((1,) + tuple(input_shape)), train=False))


def count_params(model: nn.Module, input_shape: tuple[int, ...]) -> int:
  """Trainable parameters (weights, biases, batch-norm scales and offsets; not running stats)."""
  return _size(_abstract_init(model, input_shape)['params'])


def flops_per_image(model: nn.Module, input_shape: tuple[int, ...]) -> int:
  """Forward-pass FLOPs for one image, 1 multiply-add = 2 FLOPs (conv and dense layers)."""
  return 2 * sum(layer.multiply_adds for layer in layers(model, input_shape))


def check_input_shape(model: nn.Module, input_shape: tuple[int, ...]) -> None:
  """Raises InputShapeError, naming the layer, when the model cannot take input_shape (h, w, c)."""
  layers(model, input_shape)


def format_layers(rows: list[Layer]) -> str:
  """A fixed-width table of layers with totals: path, type, output shape, params, multiply-adds."""
  lines = [f"{'layer':42s} {'type':12s} {'output':>16s} {'params':>13s} {'MACs':>15s}"]
  for row in rows:
    shape = 'x'.join(map(str, row.output_shape))
    lines.append(f'{row.path:42s} {row.kind:12s} {shape:>16s} {row.params:>13,d} '
                 f'{row.multiply_adds:>15,d}')
  macs = sum(row.multiply_adds for row in rows)
  lines.append(f"{'total':42s} {'':12s} {'':>16s} {sum(r.params for r in rows):>13,d} "
               f'{macs:>15,d}')
  lines.append(f'forward FLOPs per image: {2 * macs:,d} (1 multiply-add = 2 FLOPs)')
  return '\n'.join(lines)


def markdown_table(header: list[str], rows: list[list]) -> str:
  """A GitHub markdown table; ints get thousands separators."""
  cell = lambda v: f'{v:,d}' if isinstance(v, int) else str(v)
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(cell(v) for v in row) + ' |' for row in rows]
  return '\n'.join(lines)

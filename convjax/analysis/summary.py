"""Looking inside a model without running it: layer table, parameter count, FLOPs, receptive fields.

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
import numpy as np

from convjax.models import input_shapes
from convjax.nn import layers as layers_lib


@dataclasses.dataclass(frozen=True)
class Layer:
  """One module call, for a batch of one example.

  Attributes:
    path: the module's path in the parameter tree.
    kind: the module's class name.
    output_shape: (*spatial, channels), or (features,).
    params: the module's own parameters (for leaf layers; 0 for containers and parameter-free ones).
    multiply_adds: per example, of conv and dense layers; 0 for anything else.
    receptive_field: per spatial axis, the input positions (pixels, samples) one output position
      can see (theoretical: padding counts); the whole input for dense and global-pool outputs.
    stride: per spatial axis, input positions between neighbouring output positions (the
      cumulative stride, or "jump"); None once the spatial axes are gone.
    counted_from: '' when both count positions of the model's input; else the path of the layer
      that changed the number of spatial axes (a spectrogram front end turning samples into
      frames x mel bands), whose output positions they count.
  """
  path: str
  kind: str
  output_shape: tuple[int, ...]
  params: int
  multiply_adds: int
  receptive_field: tuple[int, ...]
  stride: tuple[int, ...] | None
  counted_from: str = ''

  @property
  def flops(self) -> int:
    return 2 * self.multiply_adds


@dataclasses.dataclass(frozen=True)
class Geometry:
  """Where one output position of a feature map looks in the input image, per spatial axis.

  Stacking a layer with kernel k, dilation d and stride s on a map with receptive field r and
  cumulative stride j gives r' = r + (k - 1) * d * j and j' = j * s: each extra kernel tap reaches
  j input pixels further, and each output step skips s input steps of j pixels.
  """
  receptive_field: tuple[int, ...]
  stride: tuple[int, ...] | None

  def then(self, kernel, dilation, strides) -> 'Geometry':
    if self.stride is None:
      return self
    return Geometry(tuple(r + (k - 1) * d * j for r, k, d, j in
                          zip(self.receptive_field, kernel, dilation, self.stride)),
                    tuple(j * s for j, s in zip(self.stride, strides)))


def window(module: nn.Module, ndim: int):
  """(kernel, dilation, strides) per spatial axis of a sliding-window layer, else None."""
  if isinstance(module, nn.Conv):
    as_tuple = lambda v: (v,) * ndim if isinstance(v, int) else tuple(v or (1,) * ndim)
    return (tuple(module.kernel_size), as_tuple(module.kernel_dilation), as_tuple(module.strides))
  if hasattr(module, 'geometry'):  # layers.Pool and layers.MaxPool2x2.
    window, strides = module.geometry(ndim)
    return window, (1,) * ndim, strides
  if hasattr(module, 'kernel_size'):  # Hand-written convolutions (LeNet's C3) with stride 1.
    return (module.kernel_size,) * ndim, (1,) * ndim, (1,) * ndim
  return None


def _is_global(module: nn.Module) -> bool:
  """Layers whose every output sees the whole input."""
  return isinstance(module, (nn.Dense, layers_lib.GlobalPool))


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


class _GeometryTracker:
  """Follows receptive fields through a trace, one module call at a time.

  A module's input is found by identity among earlier module outputs. Inputs made by plain
  functions between modules (activations, flatten, concatenation) are not module outputs; they
  take the latest geometry, which in a chain, a residual block or a dense block is the one with
  the largest receptive field reaching them. A container's output takes the largest receptive
  field among the calls inside it, since all of its branches end there.
  """

  def __init__(self, input_shape: tuple[int, ...]):
    spatial = len(input_shape) - 1
    self.image = tuple(input_shape[:-1])
    self.latest = Geometry((1,) * spatial, (1,) * spatial)
    self.counted_from = ''
    self.records: list[Geometry] = []
    self._by_id: dict[int, tuple[Any, Geometry]] = {}

  def input_of(self, args) -> Geometry:
    known = self._by_id.get(id(args[0])) if args else None
    return known[1] if known else self.latest

  def output_of(self, module, inputs: Geometry, first_inner: int, output) -> Geometry:
    ndim = len(self.image)
    sliding = window(module, ndim)
    spatial = getattr(output, 'ndim', 0) - 2
    if not _is_global(module) and spatial > 0 and spatial != ndim:
      # A front end with other axes than its input (log-mel: samples -> frames x mels): count
      # positions of its output from here on, as if it were the input.
      self.image, self.counted_from = tuple(output.shape[1:-1]), module.name or type(module).__name__
      geometry = Geometry((1,) * spatial, (1,) * spatial)
    elif _is_global(module):
      geometry = Geometry(self.image, None)
    elif len(self.records) > first_inner:  # A container: its widest inner call.
      geometry = max(self.records[first_inner:], key=_reach)
    elif sliding is not None:
      kernel, dilation, strides = sliding
      geometry = inputs.then(kernel, dilation, strides)
    else:
      geometry = inputs
    self.records.append(geometry)
    self.latest = geometry
    if hasattr(output, 'shape'):
      self._by_id[id(output)] = (output, geometry)  # Keep output alive so its id stays unique.
    return geometry


def _reach(geometry: Geometry) -> tuple:
  return (geometry.stride is None, geometry.receptive_field)


def layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[Layer]:
  """Returns every module call of model.init on one image of `input_shape` (*spatial, c), in
  call order.

  Raises input_shapes.InputShapeError when a layer's input or output would be empty.
  """
  calls, tracker = [], _GeometryTracker(tuple(input_shape))

  def record(module, path, args, proceed):
    inputs, first_inner = tracker.input_of(args), len(tracker.records)
    output = proceed()
    # The first array: logits of (logits, features), a backbone's finest map, a heatmap.
    main = jax.tree.leaves(output)[0]
    geometry = tracker.output_of(module, inputs, first_inner, main)
    # A module's own parameters are the arrays at its level; its children's sit in sub-dicts.
    own_params = sum(_size(v) for v in module.variables.get('params', {}).values()
                     if not isinstance(v, Mapping))
    if path:  # The model itself is not one of its layers.
      calls.append(Layer(path, type(module).__name__, tuple(main.shape[1:]), own_params,
                         _multiply_adds(module, main), geometry.receptive_field, geometry.stride,
                         tracker.counted_from))
    return output

  input_shapes.trace(model, input_shape, record)
  return calls


def count_params(model: nn.Module, input_shape: tuple[int, ...]) -> int:
  """Trainable parameters (weights, biases, batch-norm scales and offsets; not running stats)."""
  return _size(input_shapes.abstract_init(model, input_shape)['params'])


def flops_per_image(model: nn.Module, input_shape: tuple[int, ...]) -> int:
  """Forward-pass FLOPs for one image, 1 multiply-add = 2 FLOPs (conv and dense layers)."""
  return 2 * sum(layer.multiply_adds for layer in layers(model, input_shape))


def format_layers(rows: list[Layer]) -> str:
  """A fixed-width table: path, type, output shape, params, FLOPs, receptive field, cumulative
  stride; then the totals."""
  axes = lambda v: '-' if v is None else 'x'.join(map(str, v)) if len(set(v)) > 1 else str(v[0])
  lines = [f"{'layer':40s} {'type':16s} {'output':>12s} {'params':>12s} {'FLOPs':>15s} "
           f"{'RF':>7s} {'stride':>6s}"]
  for row in rows:
    shape = 'x'.join(map(str, row.output_shape))
    lines.append(f'{row.path:40s} {row.kind:16s} {shape:>12s} {row.params:>12,d} '
                 f'{row.flops:>15,d} {axes(row.receptive_field):>7s} {axes(row.stride):>6s}')
  lines.append(f"{'total':40s} {'':16s} {'':>12s} {sum(r.params for r in rows):>12,d} "
               f'{sum(r.flops for r in rows):>15,d}')
  lines.append('FLOPs: forward pass per example, 1 multiply-add = 2 FLOPs, conv and dense '
               'layers. RF: receptive field in input positions (pixels, samples); stride: '
               'cumulative, in input positions.')
  front_ends = dict.fromkeys(row.counted_from for row in rows if row.counted_from)
  for name in front_ends:
    first = next(row for row in rows if row.counted_from == name)
    lines.append(f"From {name} on, RF and stride count positions of its output "
                 f"({'x'.join(map(str, first.output_shape[:-1]))}), not of the input.")
  return '\n'.join(lines)


def markdown_table(header: list[str], rows: list[list]) -> str:
  """A GitHub markdown table; ints get thousands separators."""
  cell = lambda v: f'{v:,d}' if isinstance(v, int) else str(v)
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(cell(v) for v in row) + ' |' for row in rows]
  return '\n'.join(lines)

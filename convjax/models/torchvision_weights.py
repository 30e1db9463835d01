"""Pretrained weights from PyTorch: torchvision's state dicts mapped onto convjax's variables.

  variables = torchvision_weights.load_torch('resnet50', 'resnet50.safetensors')
  logits = models.create('resnet50').apply(variables, images, train=False)  # [b, 224, 224, 3]

convjax's AlexNet, VGG, ResNet, ResNeXt, Wide ResNet-50-2, DenseNet, googlenet_torchvision,
MobileNetV2 and V3, EfficientNet-B0, RegNetX/Y-400MF and ConvNeXt-T lay out their layers as
torchvision's do, one for one, so each convjax layer has exactly one torchvision counterpart,
which `torch_name` names from the layer's module path by its family's rule. timm's ResNets and
DenseNet-121 use the same names, so their state dicts load too (benchmarks/results/
timm_parity.json; timm's VGG has a convolutional head of its own and does not). On the way,
tensors change layout:

  conv kernel    [out, in, kh, kw] (OIHW)   -> [kh, kw, in, out] (HWIO)
  dense kernel   [out, in]                  -> [in, out]; a dense layer reading a flattened conv
                                               map (AlexNet's and VGG's first, GoogLeNet's
                                               auxiliary fc1) also reorders its inputs from
                                               PyTorch's NCHW flattening (c, h, w) to convjax's
                                               NHWC flattening (h, w, c)
  batch norm     weight, bias, running_mean, running_var -> scale, bias, mean, var
  layer norm     weight, bias -> scale, bias
  layer scale    [c, 1, 1] (ConvNeXt's)  -> [c]

Every tensor on both sides is used exactly once, with matching shapes. Dropped, by rule: batch
norm's `num_batches_tracked`, a step counter that inference never reads, and the auxiliary heads
of a GoogLeNet built without them (torchvision's files carry them, untrained). Anything else left
over, missing or misshapen is an error naming the first offending tensor. torchvision's ImageNet
GoogLeNet weights expect `models.create('googlenet_torchvision', transform_input=True)`.

Files: `.safetensors` needs only NumPy (the pinned `safetensors` package); `.pth`, `.pt` and
`.bin` are pickles that only PyTorch reads, so they need torch installed.
"""
import os
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from convjax import errors, models
from convjax.models import (alexnet, convnext, densenet, googlenet, mobilenet, regnet, resnet,
                            vgg)


class WeightsError(errors.UserError):
  """A weights file or state dict that does not fit the model, or cannot be read."""


StateDict = Mapping[str, Any]
Path = tuple[str, ...]

# Leaf names: convjax's (per kind of layer) -> torchvision's.
_LEAVES = {'kernel': 'weight', 'bias': 'bias', 'scale': 'weight', 'mean': 'running_mean',
           'var': 'running_var', 'layer_scale': 'layer_scale'}
TORCH_SUFFIXES = ('.pth', '.pt', '.bin')


# ------------------------------------------------------------------------------------------------
# Names: a convjax layer's module path -> its torchvision module name, per family.

def _index(name: str) -> int:
  """'Bottleneck_12' -> 12: Flax numbers unnamed submodules of one type in creation order."""
  return int(name.rsplit('_', 1)[1])


def _position(sizes, index: int) -> tuple[int, int]:
  """The flat index-th unit of groups of `sizes` units -> (group, index within the group)."""
  for group, size in enumerate(sizes):
    if index < size:
      return group, index
    index -= size
  raise WeightsError(f'unit {index} is past the model\'s {sum(sizes)} units')


def _resnet_name(model: resnet.ResNet, path: Path) -> str:
  """stem_conv -> conv1; Bottleneck_4/Conv_2 -> layer2.0.conv3; .../shortcut_conv -> downsample.0."""
  fixed = {'stem_conv': 'conv1', 'stem_norm': 'bn1', 'classifier': 'fc'}
  if path[0] in fixed:
    return fixed[path[0]]
  stage, block = _position(model.stage_sizes, _index(path[0]))
  part = {'shortcut_conv': 'downsample.0', 'shortcut_norm': 'downsample.1'}.get(path[1])
  if part is None:  # Conv_i -> conv{i+1}, BatchNorm_i -> bn{i+1}.
    part = ('conv' if path[1].startswith('Conv') else 'bn') + str(_index(path[1]) + 1)
  return f'layer{stage + 1}.{block}.{part}'


def _densenet_name(model: densenet.DenseNet, path: Path) -> str:
  """DenseLayer_6/BatchNorm_1 -> features.denseblock2.denselayer1.norm2; the top-level
  BatchNorm_t/Conv_t are transition t + 1's."""
  fixed = {'stem_conv': 'features.conv0', 'stem_norm': 'features.norm0',
           'final_norm': f'features.norm{len(model.block_sizes) + 1}', 'classifier': 'classifier'}
  if path[0] in fixed:
    return fixed[path[0]]
  kind = 'conv' if path[-1].startswith('Conv') else 'norm'
  if path[0].startswith('DenseLayer'):
    block, layer = _position(model.block_sizes, _index(path[0]))
    return f'features.denseblock{block + 1}.denselayer{layer + 1}.{kind}{_index(path[1]) + 1}'
  return f'features.transition{_index(path[0]) + 1}.{kind}'


def _sequential_name(feature_indices: list[int], classifier_indices: tuple[int, int, int],
                     path: Path) -> str:
  """AlexNet and VGG: convs and batch norms are entries of torchvision's `features` Sequential,
  the three fully connected layers entries of its `classifier` Sequential."""
  if path[0] == 'classifier':
    return f'classifier.{classifier_indices[2]}'
  if path[0].startswith('Dense'):
    return f'classifier.{classifier_indices[_index(path[0])]}'
  offset = 1 if path[0].startswith('BatchNorm') else 0  # A batch norm follows its conv.
  return f'features.{feature_indices[_index(path[0])] + offset}'


def _vgg_name(model: vgg.VGG, path: Path) -> str:
  """Conv_i -> features.k: each conv is followed by [batch norm,] ReLU, each stage by a pool."""
  indices, position = [], 0
  for num_convs in model.stage_sizes:
    for _ in range(num_convs):
      indices.append(position)
      position += 3 if model.batch_norm else 2
    position += 1
  # classifier: Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear.
  return _sequential_name(indices, (0, 3, 6), path)


_INCEPTION_BRANCHES = ('branch1', 'branch2.1', 'branch2.0', 'branch3.1', 'branch3.0', 'branch4.1')


def _googlenet_name(model: googlenet.GoogLeNet, path: Path) -> str:
  """ConvUnit_1 -> conv2; Inception_2/ConvUnit_1 -> inception4a.branch2.1; aux_1 -> aux1."""
  unit = {'Conv_0': 'conv', 'BatchNorm_0': 'bn'}
  if path[0] == 'classifier':
    return 'fc'
  # unit(b)(unit(a)(x)) creates b's module before a's, so in the stem and in each Inception
  # branch the wider conv comes before the 1x1 that feeds it: the stem's ConvUnit_1 is the 3x3
  # (torchvision's conv3), an Inception's ConvUnit_1 its second branch's 3x3 (branch2.1).
  if path[0].startswith('ConvUnit'):
    return f"{('conv1', 'conv3', 'conv2')[_index(path[0])]}.{unit[path[1]]}"
  if path[0].startswith('Inception'):
    stage, index = _position([len(rows) for rows in model.stages], _index(path[0]))
    branch = _INCEPTION_BRANCHES[_index(path[1])]
    return f'inception{stage + 3}{"abcdefghi"[index]}.{branch}.{unit[path[2]]}'
  head = 'aux1' if _index(path[0]) == 1 else 'aux2'  # On 4a's and on 4d's output.
  if path[1].startswith('ConvUnit'):
    return f'{head}.conv.{unit[path[2]]}'
  return f'{head}.fc{_index(path[1]) + 1}'


def _alexnet_name(model: alexnet.AlexNet, path: Path) -> str:
  """features: conv, ReLU, pool, conv, ReLU, pool, conv, ReLU, conv, ReLU, conv, ReLU, pool."""
  del model
  # classifier: Dropout, Linear, ReLU, Dropout, Linear, ReLU, Linear.
  return _sequential_name([0, 3, 6, 8, 10], (1, 4, 6), path)


# The units of the blocks of the newer families: Conv2dNormActivation's Sequential, and
# squeeze-and-excitation's two 1x1 convolutions.
_UNIT = {'conv': '0', 'norm': '1', 'reduce': 'fc1', 'expand': 'fc2'}


def _unit(prefix: str, path: Path) -> str:
  """prefix + the unit names of path: ('conv',) -> prefix.0, ('norm',) -> prefix.1."""
  return '.'.join([prefix, *(_UNIT[part] for part in path)])


def _inverted_residuals(model) -> list[tuple[bool, bool]]:
  """(has an expansion, has squeeze-and-excitation) of each inverted residual, in order: the
  parts torchvision's Sequential numbers."""
  if isinstance(model, mobilenet.MobileNetV2):
    return [(t != 1, False) for t, _, n, _ in model.stages for _ in range(n)]
  if isinstance(model, mobilenet.MobileNetV3):
    inputs = [16] + [setting[2] for setting in model.settings]
    return [(setting[1] != width, setting[3]) for setting, width in zip(model.settings, inputs)]
  return [(e != 1, True) for e, *_, n in model.stages for _ in range(n)]


def _inverted_residual_name(prefix: str, parts: tuple[bool, bool], path: Path,
                            split_projection: bool = False) -> str:
  """One inverted residual's layer: its parts numbered in order, expand, depthwise, se,
  project; MobileNetV2's projection is a conv and a norm of their own (split_projection)."""
  expand, se = parts
  order = ['expand'] * expand + ['depthwise'] + ['se'] * se + ['project']
  index = order.index(path[0])
  if split_projection and path[0] == 'project':
    return f'{prefix}.{index + (path[1] == "norm")}'
  return _unit(f'{prefix}.{index}', path[1:])


def _mobilenet_name(model, path: Path) -> str:
  """MobileNetV2/V3: stem -> features.0, blockK -> features.K (V2's parts under .conv, V3's
  under .block), head -> the last features entry; V3's hidden layer -> classifier.0."""
  parts = _inverted_residuals(model)
  v2 = isinstance(model, mobilenet.MobileNetV2)
  fixed = {'stem': 'features.0', 'head': f'features.{len(parts) + 1}'}
  if path[0] in fixed:
    return _unit(fixed[path[0]], path[1:])
  if path[0] in ('hidden', 'classifier'):
    return {'hidden': 'classifier.0', 'classifier': 'classifier.1' if v2 else 'classifier.3'}[
        path[0]]
  block = int(path[0][len('block'):])
  return _inverted_residual_name(f'features.{block}.{"conv" if v2 else "block"}',
                                 parts[block - 1], path[1:], split_projection=v2)


def _efficientnet_name(model: mobilenet.EfficientNet, path: Path) -> str:
  """stem -> features.0; stageS_blockJ -> features.S.(J-1).block; head -> features.8."""
  fixed = {'stem': 'features.0', 'head': f'features.{len(model.stages) + 1}'}
  if path[0] in fixed:
    return _unit(fixed[path[0]], path[1:])
  if path[0] == 'classifier':
    return 'classifier.1'
  stage, block = (int(n) for n in path[0][len('stage'):].split('_block'))
  number = sum(n for *_, n in model.stages[:stage - 1]) + block - 1
  return _inverted_residual_name(f'features.{stage}.{block - 1}.block',
                                 _inverted_residuals(model)[number], path[1:])


def _regnet_name(model: regnet.RegNet, path: Path) -> str:
  """stem -> stem; stageS_blockJ/b -> trunk_output.blockS.blockS-(J-1).f.b; proj stays."""
  del model
  if path[0] in ('stem', 'classifier'):
    return _unit({'stem': 'stem', 'classifier': 'fc'}[path[0]], path[1:])
  stage, block = (int(n) for n in path[0][len('stage'):].split('_block'))
  part = path[1] if path[1] == 'proj' else f'f.{path[1]}'
  return _unit(f'trunk_output.block{stage}.block{stage}-{block - 1}.{part}', path[2:])


_CONVNEXT_BLOCK = {'depthwise': '0', 'norm': '2', 'expand': '3', 'project': '5'}


def _convnext_name(model: convnext.ConvNeXt, path: Path) -> str:
  """stem -> features.0; stage S's blocks -> features.(2S-1); the downsampling before stage S
  -> features.(2S-2); head_norm -> classifier.0. A block's layer scale is its own tensor."""
  del model
  fixed = {'stem_conv': 'features.0.0', 'stem_norm': 'features.0.1',
           'head_norm': 'classifier.0', 'classifier': 'classifier.2'}
  if path[0] in fixed:
    return fixed[path[0]]
  if path[0].startswith('downsample'):
    stage, part = path[0][len('downsample'):].split('_')
    return f'features.{2 * int(stage) - 2}.{"0" if part == "norm" else "1"}'
  stage, block = (int(n) for n in path[0][len('stage'):].split('_block'))
  name = f'features.{2 * stage - 1}.{block - 1}'
  return name if len(path) == 1 else f'{name}.block.{_CONVNEXT_BLOCK[path[1]]}'


# The registry models with a torchvision counterpart, and the rule naming their layers.
TORCH_FAMILIES: dict[str, Callable[[Any, Path], str]] = {
    'alexnet': _alexnet_name,
    **{f'vgg{depth}{bn}': _vgg_name for depth in (11, 13, 16, 19) for bn in ('', '_bn')},
    **{name: _resnet_name for name in ('resnet18', 'resnet34', 'resnet50', 'resnet101',
                                       'resnet152', 'resnext50_32x4d', 'wide_resnet50_2')},
    'densenet121': _densenet_name,
    'googlenet_torchvision': _googlenet_name,
    **{name: _mobilenet_name for name in ('mobilenet_v2', 'mobilenet_v3_small',
                                          'mobilenet_v3_large')},
    'efficientnet_b0': _efficientnet_name,
    'regnet_x_400mf': _regnet_name, 'regnet_y_400mf': _regnet_name,
    'convnext_tiny': _convnext_name,
}


def _trunk_channels(model_name: str, model, path: Path) -> int | None:
  """The channels of the conv map that the dense layer at `path` reads flattened, where PyTorch's
  flattening order differs from convjax's: AlexNet's and VGG's first FC layer, and fc1 of
  GoogLeNet's auxiliary heads. None for every other layer."""
  if model_name.startswith(('alexnet', 'vgg')) and path[0] == 'Dense_0':
    return model.widths[-1]
  if model_name.startswith('googlenet') and path[0].startswith('aux') and path[1] == 'Dense_0':
    return googlenet.AUX_WIDTH
  return None


def _dropped(model_name: str, model, key: str) -> bool:
  """Tensors convjax does without: batch norm's step counter, and the auxiliary heads of a
  GoogLeNet built without them (torchvision's files carry them, untrained)."""
  if key.rsplit('.', 1)[-1] == 'num_batches_tracked':
    return True
  return (model_name.startswith('googlenet') and not model.aux_logits and
          key.startswith(('aux1.', 'aux2.')))


def torch_name(model_name: str, model, path: Path) -> str:
  """The torchvision module name of the convjax layer at `path` (leaf excluded), e.g.
  ('Bottleneck_3', 'shortcut_conv') of resnet50 -> 'layer2.0.downsample.0'."""
  return TORCH_FAMILIES[model_name](model, path)


# ------------------------------------------------------------------------------------------------
# Tensors: layout changes.

def _from_torch(array: np.ndarray, leaf: str, trunk_channels: int | None) -> np.ndarray:
  """A torchvision tensor in convjax's layout; trunk_channels: the channels of the conv trunk a
  dense kernel reads flattened, else None."""
  if leaf == 'layer_scale':  # [c, 1, 1] -> [c].
    return array.reshape(-1)
  if leaf != 'kernel':
    return array
  if array.ndim == 4:  # OIHW -> HWIO.
    return array.transpose(2, 3, 1, 0)
  if array.ndim == 2 and trunk_channels:  # [out, c*h*w] -> [h*w*c, out].
    out, size = array.shape
    side = int(round((size // trunk_channels) ** 0.5))
    if trunk_channels * side * side != size:
      return array.T  # Not a square trunk: the shape check reports it.
    return (array.reshape(out, trunk_channels, side, side).transpose(2, 3, 1, 0)
            .reshape(size, out))
  return array.T


def shape_text(shape) -> str:
  """(64, 3, 7, 7) -> '64x3x7x7'; () -> 'scalar'."""
  return 'x'.join(map(str, shape)) or 'scalar'


def _to_numpy(value) -> np.ndarray:
  """A torch tensor (any device, any float dtype) or array-like -> a NumPy array."""
  if hasattr(value, 'detach'):  # torch.Tensor, without importing torch.
    value = value.detach().cpu()
    if value.is_floating_point():
      value = value.float()  # NumPy has no bfloat16.
    value = value.numpy()
  return np.asarray(value)


def _strip_wrapper_prefix(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """nn.DataParallel and DistributedDataParallel save every name under 'module.'."""
  if state and all(key.startswith('module.') for key in state):
    return {key[len('module.'):]: value for key, value in state.items()}
  return state


# ------------------------------------------------------------------------------------------------
# Files.

def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """A weights file -> {torch name: array}. `.safetensors` with NumPy alone; `.pth`, `.pt` and
  `.bin` with torch (also unwrapping {'state_dict': ...} and {'model': ...} checkpoints)."""
  if not os.path.isfile(path):
    raise WeightsError(f"no weights file at '{path}'")
  if path.endswith('.safetensors'):
    from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel
    try:
      return load_file(path)
    except Exception as e:  # safetensors raises its own and OS errors for truncated files.
      raise WeightsError(f"'{path}' is not a readable safetensors file ({e})") from None
  if not path.endswith(TORCH_SUFFIXES):
    raise WeightsError(f"'{path}' is neither .safetensors nor a PyTorch file "
                       f"({', '.join(TORCH_SUFFIXES)})")
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise WeightsError(f"reading '{path}' needs PyTorch, which is not installed: install torch, "
                       'or save the state dict as .safetensors') from None
  try:
    state = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:  # Truncated zips, pickles of other things: torch raises many types.
    raise WeightsError(f"'{path}' is not a readable PyTorch state dict "
                       f'({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""})') from None
  for key in ('state_dict', 'model'):
    if isinstance(state, dict) and isinstance(state.get(key), dict):
      state = state[key]
  if not isinstance(state, dict):
    raise WeightsError(f"'{path}' holds a {type(state).__name__}, not a state dict")
  return {key: _to_numpy(value) for key, value in state.items()}


# ------------------------------------------------------------------------------------------------
# The mapping.

def _layout(model_name: str, num_classes: int | None, overrides: Mapping[str, Any]):
  """The model, and each of its variables with its torchvision name: a list of (collection, path,
  shape-only target, torch key, trunk channels where the dense layer reads a flattened map)."""
  _check_mapped(model_name)
  model = models.create(model_name, num_classes=num_classes, **overrides)
  height, width, channels = models.get_spec(model_name).input_shape
  images = jnp.zeros((1, height, width, channels), jnp.float32)
  # Shapes only: no memory and no compute, even for VGG-19's 144M parameters.
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), images, train=False))
  return model, [
      (collection, path, target, f'{torch_name(model_name, model, path[:-1])}.{_LEAVES[path[-1]]}',
       _trunk_channels(model_name, model, path[:-1]))
      for collection, tree in variables.items()
      for path, target in traverse_util.flatten_dict(tree).items()]


def _check_mapped(model_name: str) -> None:
  if model_name not in TORCH_FAMILIES:
    models.get_spec(model_name)  # An unknown name gets the registry's own error.
    raise WeightsError(f"convjax has no torchvision mapping for '{model_name}'; models with one: "
                       f"{', '.join(sorted(TORCH_FAMILIES))}")


def torch_num_classes(model_name: str, state: StateDict) -> int:
  """The number of classes a state dict of `model_name`'s counterpart was trained for: the
  output width of its final classifier."""
  _check_mapped(model_name)
  key = torch_name(model_name, models.create(model_name), ('classifier',)) + '.weight'
  state = _strip_wrapper_prefix(dict(state))
  if key not in state:
    raise WeightsError(f"the weights have no '{key}', {model_name}'s classifier: are they for "
                       'another architecture?')
  return int(np.shape(state[key])[0])


def load_torch(model_name: str, weights: str | StateDict, num_classes: int | None = None,
               **overrides: Any) -> dict[str, Any]:
  """torchvision weights -> convjax variables {'params': ..., 'batch_stats': ...} (float32 NumPy).

  Args:
    model_name: a registry name in TORCH_FAMILIES.
    weights: a file path (.safetensors, .pth, .pt, .bin) or a state dict {name: tensor or array}.
    num_classes: the classifier's width; the model's native one (ImageNet's 1000) when None.
    **overrides: module fields of a variant, as models.create takes them (widths=...).
  Returns:
    variables for `models.create(model_name, num_classes, **overrides).apply(variables, x,
    train=False)`,
    x: [b, 224, 224, 3] (or any size the model takes), preprocessed as the weights were trained.
  Raises:
    WeightsError: an unreadable file, or weights that are not this model's: a missing, extra or
      misshapen tensor, named.
  """
  # The layout first: a model without a mapping fails before any file is read.
  model, layout = _layout(model_name, num_classes, overrides)
  state = read_state_dict(weights) if isinstance(weights, (str, os.PathLike)) else {
      key: _to_numpy(value) for key, value in weights.items()}
  state = _strip_wrapper_prefix(dict(state))
  flat = {}
  for collection, path, target, key, trunk in layout:
    where = '/'.join((collection,) + path)
    if key not in state:
      raise WeightsError(f"the weights have no '{key}', which {model_name}'s {where} needs: are "
                         'they for another architecture?')
    array = _from_torch(state[key], path[-1], trunk)
    if array.shape != target.shape:
      raise WeightsError(
          f"'{key}' has shape {shape_text(state[key].shape)}, but {model_name}'s {where} needs "
          f"{shape_text(_torch_shape(target.shape, path[-1]))}: are the weights for another "
          'architecture or number of classes?')
    flat[(collection,) + path] = np.ascontiguousarray(array, dtype=np.float32)
  used = {key for *_, key, _ in layout}
  unused = sorted(key for key in state if key not in used and not _dropped(model_name, model, key))
  if unused:
    raise WeightsError(f"{len(unused)} tensor(s) in the weights have no place in {model_name}, "
                       f"the first being '{unused[0]}': are they for another architecture?")
  return traverse_util.unflatten_dict(flat)


def torch_state_shapes(model_name: str, num_classes: int | None = None, **overrides: Any
                       ) -> dict[str, tuple[int, ...]]:
  """The state dict of torchvision's counterpart of `model_name` as {name: shape}, without
  num_batches_tracked: what `load_torch` expects, for tests and for checking a file by eye."""
  return {key: _torch_shape(target.shape, path[-1])
          for _, path, target, key, _ in _layout(model_name, num_classes, overrides)[1]}


def _torch_shape(shape: tuple[int, ...], leaf: str) -> tuple[int, ...]:
  """A convjax variable's shape -> its torchvision tensor's (reordering a dense kernel's inputs
  keeps its shape)."""
  if leaf == 'layer_scale':
    return (*shape, 1, 1)
  if leaf != 'kernel':
    return tuple(shape)
  if len(shape) == 4:  # HWIO -> OIHW.
    return (shape[3], shape[2], shape[0], shape[1])
  return tuple(reversed(shape))

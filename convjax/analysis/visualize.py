"""What a trained network computes, as arrays ready to draw: its first layer's filters, the feature
maps one example (an image, a waveform) produces stage by stage, its confusions and its most
confident mistakes."""
import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from convjax import errors
from convjax.analysis import summary
from convjax.nn import layers


def first_conv_filters(model: nn.Module, variables: dict, input_shape) -> tuple[str, np.ndarray]:
  """(path, kernel [*window, in_channels, filters]) of the first convolution the model calls:
  [kh, kw, in, filters] for a 2-D net, [k, in, filters] for a 1-D one."""
  for layer in summary.layers(model, input_shape):
    if layer.kind == 'Conv':
      params = variables['params']
      for name in layer.path.split('/'):
        params = params[name]
      return layer.path, np.asarray(params['kernel'])
  raise errors.InvalidValueError(f'{type(model).__name__} has no convolution layer to draw')


def byte_filters(model: nn.Module, variables: dict, input_shape) -> tuple[str, np.ndarray]:
  """(path, weights [k, 256, filters]) of a text model's first convolution as a function of the
  input bytes: a one-hot convolution's kernel, or an embedding followed by a convolution folded
  into one (each byte's embedding times each tap's weights)."""
  found = [layer for layer in summary.layers(model, input_shape)
           if layer.kind in ('OneHotConv', 'Embed', 'Conv')]
  lookup = lambda path: functools.reduce(lambda tree, name: tree[name], path.split('/'),
                                         variables['params'])
  if found and found[0].kind == 'OneHotConv':
    return found[0].path, np.asarray(lookup(found[0].path)['kernel'])
  if len(found) > 1 and found[0].kind == 'Embed' and found[1].kind == 'Conv':
    table = np.asarray(lookup(found[0].path)['embedding'])  # [256, e]
    kernel = np.asarray(lookup(found[1].path)['kernel'])  # [k, e, filters]
    return found[1].path, np.einsum('be,kef->kbf', table, kernel)
  raise errors.InvalidValueError(f'{type(model).__name__} reads no bytes through a convolution')


def preferred_strings(weights: np.ndarray) -> list[str]:
  """Per filter of weights [k, 256, filters], the k bytes that excite it most (the best byte at
  each tap), as text; bytes that are no printable ASCII character are shown as '·'."""
  best = weights.argmax(axis=1)  # [k, filters]
  show = lambda b: chr(b) if 32 <= b < 127 else '·'
  return [''.join(show(int(b)) for b in best[:, f]) for f in range(weights.shape[-1])]


def filter_images(kernel: np.ndarray) -> list[np.ndarray]:
  """One image per filter: [kh, kw] for one input channel, else [kh, kw, 3] for RGB-like input
  (the first three channels), so colour filters are seen as colours. A 3-D kernel
  [kt, kh, kw, 1, filters] gives [kh, kt * (kw + 1) - 1]: its frames side by side, a zero column
  between them."""
  if kernel.ndim == 5:
    separated = np.pad(kernel[..., 0, :], ((0, 0), (0, 0), (0, 1), (0, 0)))  # [kt, kh, kw+1, f]
    rows = np.concatenate(list(separated), axis=1)[:, :-1]  # [kh, kt * (kw + 1) - 1, f]
    return [rows[..., f] for f in range(kernel.shape[-1])]
  if kernel.shape[2] == 1:
    return [kernel[:, :, 0, f] for f in range(kernel.shape[3])]
  return [kernel[:, :, :3, f] for f in range(kernel.shape[3])]


def peak_frequencies(kernel: np.ndarray, sample_rate: float) -> np.ndarray:
  """float [filters]: the frequency (Hz) where each 1-D filter of kernel [k, 1, filters] has its
  largest gain, from its zero-padded discrete Fourier transform; a filter applied to a
  waveform is a band-pass filter around this frequency."""
  size = max(1024, kernel.shape[0])
  gains = np.abs(np.fft.rfft(kernel[:, 0, :], n=size, axis=0))
  return np.argmax(gains, axis=0) * sample_rate / size


def feature_maps(model: nn.Module, variables: dict, image: jnp.ndarray) -> list[tuple[str, Any]]:
  """The maps one example [*spatial, c] (already normalised) produces, stage by stage.

  Returns (label, maps [*spatial', channels]) for every convolution and pooling output in call
  order, and for any front end that changes the axes (a log-mel spectrogram), with the activation
  between stages where one is applied: a stage whose input is not the previous stage's output
  gets that input drawn first, labelled as the activation feeding it.
  """
  stages, last = [], [None]

  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    # Stages are the sliding-window layers, convolutions and pooling, as the summary sees them.
    if context.method_name != '__call__':
      return next_fun(*args, **kwargs)
    if summary.window(module, image.ndim - 1) is None:
      output = next_fun(*args, **kwargs)
      if getattr(output, 'ndim', 0) >= 3 and output.ndim != args[0].ndim:  # A front end.
        stages.append(('/'.join(module.scope.path), output))
        last[0] = output
      return output
    path = '/'.join(module.scope.path)
    if last[0] is not None and args[0] is not last[0] and args[0].ndim >= 3:
      stages.append((f'activation into {path}', args[0]))
    output = next_fun(*args, **kwargs)
    stages.append((f'{path} ({_describe(module)})', output))
    last[0] = output
    return output

  with nn.intercept_methods(interceptor):
    model.apply(variables, image[None], train=False)
  return [(label, np.asarray(maps[0])) for label, maps in stages]


def _describe(module: nn.Module) -> str:
  if isinstance(module, nn.Conv):
    return f"conv {'x'.join(map(str, module.kernel_size))}"
  if isinstance(module, layers.Pool):
    return f'{module.kind} pool'
  if isinstance(module, layers.MaxPool2x2):
    return 'max pool 2x2'
  return type(module).__name__


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
  """counts [true class, predicted class]."""
  counts = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(counts, (labels, predictions), 1)
  return counts


def confidently_wrong(probabilities: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
  """Indices of the `count` misclassified examples whose wrong prediction had the highest
  probability, most confident first."""
  predictions = probabilities.argmax(-1)
  wrong = np.flatnonzero(predictions != labels)
  confidence = probabilities[wrong, predictions[wrong]]
  return wrong[np.argsort(-confidence, kind='stable')[:count]]

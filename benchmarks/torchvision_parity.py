"""convjax's imports of torchvision models against torchvision itself: the same images, the logits.

  pip install -r benchmarks/requirements-torchvision.txt   # torch and torchvision, never convjax's
  python -m benchmarks.torchvision_parity [--models=resnet*,vgg11] \
      [--output=benchmarks/results/torchvision_parity.json]   # adds or replaces these models

Each model is built by torchvision with random weights. Its biases, batch-norm scales and running
statistics are then randomised too, so that a tensor the mapping dropped or misplaced cannot hide
behind an initial 0 or 1. Its state dict goes through convjax.weights.load_torch, and both
frameworks classify the same two random 224x224 images. The table gives the largest logit
difference, and that difference relative to the largest logit (tests/test_weights.py requires it
to be at most 1e-4).
"""
import fnmatch
import importlib.util
import json
import os
import warnings

import numpy as np
from absl import flags

from convjax import errors, models, weights
from experiments import cli

_MODELS = flags.DEFINE_list('models', ['*'], 'fnmatch patterns over the models with a mapping.')
_BATCH = flags.DEFINE_integer('batch', 2, 'Images per comparison.')
_OUTPUT = flags.DEFINE_string('output', None, 'Also write the differences here as JSON.')


def _randomise(module, seed: int) -> None:
  """Biases, batch-norm scales and means ~ N(0 or 1, 0.1), running variances ~ U(0.5, 1.5)."""
  import torch  # pylint: disable=import-outside-toplevel
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, tensor in module.state_dict().items():
      if name.endswith('running_var'):
        tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
      elif name.endswith(('bias', 'running_mean')) or (name.endswith('weight') and tensor.ndim == 1):
        centre = 1.0 if name.endswith('weight') else 0.0
        tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1 + centre)


def compare(name: str, batch: int = 2, seed: int = 0) -> dict[str, float]:
  """torchvision's `name` with random weights, imported into convjax: both frameworks' logits on
  the same [batch, 224, 224, 3] images. Returns max_abs_difference, max_abs_logit, relative."""
  import torch  # pylint: disable=import-outside-toplevel
  import torchvision  # pylint: disable=import-outside-toplevel
  torch.manual_seed(seed)
  with warnings.catch_warnings():  # GoogLeNet's notice that its default initialisation will change.
    warnings.simplefilter('ignore', FutureWarning)
    reference = getattr(torchvision.models, name.removesuffix('_torchvision'))(weights=None).eval()
  _randomise(reference, seed + 1)
  images = np.random.default_rng(seed + 2).standard_normal((batch, 224, 224, 3)).astype(np.float32)
  with torch.no_grad():
    expected = reference(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
  # torchvision builds GoogLeNet with its auxiliary heads: import them too, to check their names
  # and shapes (evaluation runs neither framework's).
  fields = {'aux_logits': True} if name.startswith('googlenet') else {}
  variables = weights.load_torch(name, reference.state_dict(), **fields)
  logits = np.asarray(models.create(name, **fields).apply(variables, images, train=False))
  difference = float(np.max(np.abs(logits - expected)))
  scale = float(np.max(np.abs(expected)))
  return {'max_abs_difference': difference, 'max_abs_logit': scale, 'relative': difference / scale}


def main(argv):
  del argv
  names = sorted(name for name in weights.TORCH_FAMILIES
                 if any(fnmatch.fnmatchcase(name, p) for p in _MODELS.value))
  if not names:
    raise errors.InvalidValueError(f"--models={','.join(_MODELS.value)} matches no model with a "
                                   f"mapping; they are: {', '.join(sorted(weights.TORCH_FAMILIES))}")
  if importlib.util.find_spec('torchvision') is None:
    raise errors.UserError('this comparison needs torch and torchvision: pip install -r '
                           'benchmarks/requirements-torchvision.txt')
  report = {}
  print(f"{'model':12s} {'max |difference|':>17s} {'max |logit|':>12s} {'relative':>10s}")
  for name in names:
    report[name] = compare(name, _BATCH.value)
    print(f"{name:12s} {report[name]['max_abs_difference']:17.3e} "
          f"{report[name]['max_abs_logit']:12.3e} {report[name]['relative']:10.2e}", flush=True)
  if _OUTPUT.value:  # Adds or replaces these models' entries; other models' stay.
    from convjax import metrics  # pylint: disable=import-outside-toplevel
    earlier = {}
    if os.path.exists(_OUTPUT.value):
      with open(_OUTPUT.value) as f:
        earlier = json.load(f)
    metrics.write_json(_OUTPUT.value, dict(sorted({**earlier, **report}.items())), make_dirs=True)


if __name__ == '__main__':
  cli.run(main)

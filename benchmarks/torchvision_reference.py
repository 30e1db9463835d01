"""torchvision's models against convjax's imports of their weights: the comparison itself, without
flags, so that tests and benchmarks.torchvision_parity share it. Needs torch and torchvision.
"""
import warnings

import numpy as np

from convjax import models, weights


def randomise(module, seed: int) -> None:
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
  randomise(reference, seed + 1)
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

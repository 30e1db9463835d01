"""torchvision's (and timm's) models against convjax's imports of their weights: the comparison
itself, without flags, so that tests and benchmarks.torchvision_parity share it. Needs torch and
torchvision, and timm for timm's models.
"""
import warnings

import numpy as np

from convjax import models
from convjax.models import torchvision_weights


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


LIBRARIES = ('torchvision', 'timm')
# timm's models whose state dicts use torchvision's names (timm's VGG has a conv "pre_logits"
# head instead of torchvision's classifier, and timm has no AlexNet or torchvision's GoogLeNet).
TIMM_MODELS = tuple(f'resnet{depth}' for depth in (18, 34, 50, 101, 152)) + ('densenet121',)


def reference_model(name: str, library: str = 'torchvision'):
  """The PyTorch model that convjax's `name` mirrors, from torchvision or timm, with its default
  random initialisation, in evaluation mode."""
  if library == 'timm':
    import timm  # pylint: disable=import-outside-toplevel
    return timm.create_model(name, pretrained=False).eval()
  import torchvision  # pylint: disable=import-outside-toplevel
  with warnings.catch_warnings():  # GoogLeNet's notice that its default initialisation will change.
    warnings.simplefilter('ignore', FutureWarning)
    return getattr(torchvision.models, name.removesuffix('_torchvision'))(weights=None).eval()


def compare(name: str, batch: int = 2, seed: int = 0,
            library: str = 'torchvision') -> dict[str, float]:
  """`library`'s `name` with random weights, imported into convjax: both frameworks' logits on
  the same [batch, 224, 224, 3] images. Returns max_abs_difference, max_abs_logit, relative."""
  import torch  # pylint: disable=import-outside-toplevel
  torch.manual_seed(seed)
  reference = reference_model(name, library)
  randomise(reference, seed + 1)
  images = np.random.default_rng(seed + 2).standard_normal((batch, 224, 224, 3)).astype(np.float32)
  with torch.no_grad():
    expected = reference(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
  # torchvision builds GoogLeNet with its auxiliary heads: import them too, to check their names
  # and shapes (evaluation runs neither framework's).
  fields = {'aux_logits': True} if name.startswith('googlenet') else {}
  variables = torchvision_weights.load_torch(name, reference.state_dict(), **fields)
  logits = np.asarray(models.create(name, **fields).apply(variables, images, train=False))
  difference = float(np.max(np.abs(logits - expected)))
  scale = float(np.max(np.abs(expected)))
  return {'max_abs_difference': difference, 'max_abs_logit': scale, 'relative': difference / scale}

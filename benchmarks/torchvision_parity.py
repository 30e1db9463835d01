"""convjax's imports of torchvision models against torchvision itself: the same images, the logits.

  pip install -r benchmarks/requirements-torchvision.txt   # torch, torchvision, timm; never convjax's
  python -m benchmarks.torchvision_parity [--models=resnet*,vgg11] \
      [--output=benchmarks/results/torchvision_parity.json]   # adds or replaces these models
  python -m benchmarks.torchvision_parity --library=timm --output=benchmarks/results/timm_parity.json

--library=timm compares timm's ResNets and DenseNet-121, whose state dicts use torchvision's names.

Each model is built by torchvision with random weights. Its biases, batch-norm scales and running
statistics are then randomised too, so that a tensor the mapping dropped or misplaced cannot hide
behind an initial 0 or 1. Its state dict goes through convjax.models.torchvision_weights.load_torch, and both
frameworks classify the same two random 224x224 images. The table gives the largest logit
difference, and that difference relative to the largest logit (tests/test_weights.py requires it
to be at most 1e-4).
"""
import fnmatch
import importlib.util
import json
import os

from absl import flags

from benchmarks import torchvision_reference
from convjax import errors
from convjax.models import torchvision_weights
from experiments import cli

_MODELS = flags.DEFINE_list('models', ['*'], 'fnmatch patterns over the models with a mapping.')
_BATCH = flags.DEFINE_integer('batch', 2, 'Images per comparison.')
_OUTPUT = flags.DEFINE_string('output', None, 'Also write the differences here as JSON.')
_LIBRARY = flags.DEFINE_enum('library', 'torchvision', torchvision_reference.LIBRARIES,
                             'Whose models to compare against.')


def main(argv):
  del argv
  library = _LIBRARY.value
  mapped = (torchvision_weights.TORCH_FAMILIES if library == 'torchvision' else
            torchvision_reference.TIMM_MODELS)
  names = sorted(name for name in mapped
                 if any(fnmatch.fnmatchcase(name, p) for p in _MODELS.value))
  if not names:
    raise errors.InvalidValueError(f"--models={','.join(_MODELS.value)} matches no {library} "
                                   f"model with a mapping; they are: {', '.join(sorted(mapped))}")
  if any(importlib.util.find_spec(module) is None for module in ('torchvision', library)):
    raise errors.UserError(f'this comparison needs torch and {library}: pip install -r '
                           'benchmarks/requirements-torchvision.txt')
  report = {}
  print(f"{'model':18s} {'max |difference|':>17s} {'max |logit|':>12s} {'relative':>10s}")
  for name in names:
    report[name] = torchvision_reference.compare(name, _BATCH.value, library=library)
    print(f"{name:18s} {report[name]['max_abs_difference']:17.3e} "
          f"{report[name]['max_abs_logit']:12.3e} {report[name]['relative']:10.2e}", flush=True)
  if _OUTPUT.value:  # Adds or replaces these models' entries; other models' stay.
    from convjax.training import metrics  # pylint: disable=import-outside-toplevel
    earlier = {}
    if os.path.exists(_OUTPUT.value):
      with open(_OUTPUT.value) as f:
        earlier = json.load(f)
    metrics.write_json(_OUTPUT.value, dict(sorted({**earlier, **report}.items())), make_dirs=True)


if __name__ == '__main__':
  cli.run(main)

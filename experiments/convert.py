"""Writes a convjax workdir from a torchvision weights file, for the tools that read workdirs.

  python -m experiments.convert --model=resnet50 --weights=resnet50.safetensors \
      --workdir=workdirs/resnet50_imagenet [--dataset=imagenet2012] [--num_classes=1000]

The weights go through convjax.models.torchvision_weights.load_torch (every tensor used exactly once; .pth files
need torch). The workdir gets config.json (configs/default.py with the model, dataset and number
of classes) and a step-0 checkpoint of the params and batch statistics. A workdir that already
holds files is refused; a failure writes nothing.
"""
from absl import flags

from experiments import cli

_MODEL = flags.DEFINE_string('model', None, 'Registry name of a model with a torchvision mapping.')
_WEIGHTS = flags.DEFINE_string('weights', None, 'A .safetensors, .pth or .pt state dict.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'The new workdir to write.')
_DATASET = flags.DEFINE_string('dataset', 'imagenet2012', 'The dataset the weights classify.')
_NUM_CLASSES = flags.DEFINE_integer('num_classes', None, "Classifier width; default: the model's.")
flags.mark_flags_as_required(['model', 'weights', 'workdir'])


def main(argv):
  del argv
  import jax
  from configs import default
  from convjax import models
  from convjax.models import torchvision_weights
  from convjax.training import config as config_lib, saved_run
  config = default.get_config()
  config.model, config.dataset = _MODEL.value, _DATASET.value
  config.num_classes = _NUM_CLASSES.value or models.get_spec(_MODEL.value).num_classes
  config_lib.validate(config, num_devices=1)
  variables = torchvision_weights.load_torch(config.model, _WEIGHTS.value, config.num_classes)
  saved_run.write_converted(_WORKDIR.value, config, variables, _WEIGHTS.value)
  count = sum(leaf.size for leaf in jax.tree.leaves(variables['params']))
  print(f'wrote {_WORKDIR.value}: {config.model} with {count:,} parameters from {_WEIGHTS.value}')


if __name__ == '__main__':
  cli.run(main)

"""Trains and evaluates several models under the same data, schedule and seed, then compares them.

  python -m experiments.compare --models=lenet5,vgg11_bn,resnet20 --dataset=fashion_mnist
      --workdir=DIR [--config=configs/default.py] [--config.X=...] [--budget_seconds=S]
      [--target_accuracy=A]

--models takes comma-separated fnmatch patterns ('resnet*'). Each model trains in DIR/<model>
exactly as experiments.train would; --budget_seconds caps each model's training time (equal
compute), --target_accuracy adds the training seconds each model took to reach it. Writes
DIR/comparison.csv, DIR/comparison.md and four PNG plots, and prints the table. Rerunning resumes:
finished models are skipped, unfinished ones continue from their checkpoints.
"""
import os

from absl import flags
from ml_collections import config_flags

from convjax import errors
from experiments import cli

_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'configs', 'default.py')
_CONFIG = config_flags.DEFINE_config_file('config', _DEFAULT_CONFIG, 'Shared config file.',
                                          lock_config=True)
_MODELS = flags.DEFINE_string('models', None, 'Comma-separated registry names or fnmatch patterns.')
_DATASET = flags.DEFINE_string('dataset', None, "Catalogue dataset; default: the config's.")
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory of the comparison.')
_BUDGET = flags.DEFINE_float('budget_seconds', None, 'Training seconds per model, at most.')
_TARGET = flags.DEFINE_float('target_accuracy', None, 'Test accuracy to time each model to.')
flags.mark_flags_as_required(['models', 'workdir'])


def main(argv):
  del argv
  from convjax import models
  from convjax.analysis import compare
  from convjax.training import builder, config as config_lib
  names = models.match(_MODELS.value)
  base = _CONFIG.value
  with base.unlocked():
    if _DATASET.value is not None:
      base.dataset = _DATASET.value
    if _BUDGET.value is not None:
      if _BUDGET.value <= 0:
        raise errors.InvalidValueError(f'--budget_seconds must be positive, got {_BUDGET.value}')
      base.train_budget_seconds = _BUDGET.value
  if _TARGET.value is not None and not 0 < _TARGET.value <= 1:
    raise errors.InvalidValueError(f'--target_accuracy must be in (0, 1], got {_TARGET.value}')
  num_devices = builder.data_parallel(base).num_devices
  for name in names:  # Every model's config is checked before the first one trains.
    config_lib.validate(compare.model_config(base, name), num_devices)
  compare.check_same_config(_WORKDIR.value, base)
  rows = []
  for name in names:
    print(f'=== {name} ===', flush=True)
    rows.append(compare.run_model(compare.model_config(base, name),
                                  os.path.join(_WORKDIR.value, name), _TARGET.value))
  markdown = compare.write_tables(rows, _WORKDIR.value)
  paths = compare.write_plots(rows, _WORKDIR.value)
  print(f"\n{markdown}\nwrote {os.path.join(_WORKDIR.value, 'comparison.csv')}, comparison.md and "
        f"{', '.join(os.path.basename(p) for p in paths)}")


if __name__ == '__main__':
  cli.run(main)

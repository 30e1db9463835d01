"""Trains and evaluates one model.

  python -m experiments.train --config=configs/lenet5_fashion_mnist.py --workdir=DIR \
      [--config.num_epochs=3 --config.batch_size=512 ...] [--show_traceback]
"""
from absl import flags
from ml_collections import config_flags

from experiments import cli

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints and metrics.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  del argv
  from convjax import parallel, train  # After flag parsing, so --help is fast.
  parallel.maybe_initialize_distributed(_CONFIG.value.distributed)
  train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
  cli.run(main)

"""Trains and evaluates one model.

  python -m experiments.train --config=configs/lenet5_fashion_mnist.py --workdir=DIR
      [--config.num_epochs=3 --config.batch_size=512 ...] [--start_over] [--show_traceback]

Rerunning the same command resumes from the newest checkpoint. SIGTERM or Ctrl-C checkpoints
the current step and exits with status 128 + the signal number.

Models: python -m experiments.summary --model='*' lists them (--config.model=NAME).
Config fields: configs/default.py lists every --config.FIELD with its meaning.
"""
from absl import flags
from ml_collections import config_flags

from experiments import cli

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints and metrics.')
_START_OVER = flags.DEFINE_bool(
    'start_over', False, "Move the workdir's earlier run (checkpoints, metrics, TensorBoard, "
    'config) into WORKDIR/previous_runs/ and train from scratch, instead of resuming or refusing '
    'a checkpoint of another model or dataset.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  del argv
  from convjax import parallel  # After flag parsing, so --help is fast.
  from convjax.training import loop
  parallel.maybe_initialize_distributed(_CONFIG.value.distributed)
  loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value, start_over=_START_OVER.value)


if __name__ == '__main__':
  cli.run(main)

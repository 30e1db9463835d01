"""The training command as users run it: bad input gets one sentence, exit 1, and no damage."""
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.reliability.harness import assert_one_sentence, tree_digest

pytestmark = pytest.mark.slow  # Every test here starts processes.

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIGITS = ['--config=configs/default.py', '--config.dataset=digits', '--config.image_size=28',
          '--config.batch_size=64', '--config.eval_batch_size=100']


def run_train(workdir, *args):
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=4')
  return subprocess.run([sys.executable, '-m', 'experiments.train', f'--workdir={workdir}', *args],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope='module')
def trained_workdir(tmp_path_factory):
  """A workdir holding a finished 6-step run, shared by the bad-input cases."""
  workdir = str(tmp_path_factory.mktemp('trained'))
  result = run_train(workdir, *DIGITS, '--config.num_train_steps=6')
  assert result.returncode == 0, result.stderr
  assert 'done: lenet5 on digits, test accuracy' in result.stdout
  return workdir


BAD_INPUTS = [
    (['--config.model=lenet7'], "unknown model 'lenet7' (did you mean 'lenet5'?); valid values are: alexnet, alexnet_2012, "),
    (['--config.model=resnet-20'], "unknown model 'resnet-20' (did you mean 'resnet20'?)"),
    (['--config.dataset=imagenet'], "unknown dataset 'imagenet' (did you mean 'imagenette'?); valid values are: ag_news_subset, "),
    (['--config.optimizer=lion'], "unknown optimizer 'lion'"),
    (['--config.lr_schedule=poly'], "unknown lr_schedule 'poly'"),
    (['--config.batch_sise=64'], "--config.batch_sise names no field of the config"),
    (['--config.batch_size=big'], 'flag --config.batch_size=big'),
    (['--config.batch_size=0'], 'batch_size must be positive, got 0'),
    (['--config.learning_rate=-0.1'], 'learning_rate must be positive, got -0.1'),
    (['--config.num_epochs=0', '--config.num_train_steps=-1'], 'num_epochs must be positive'),
    (['--config.batch_size=66', '--config.num_devices=4'], 'batch_size=66 is not divisible by the 4 devices'),
    (['--config.num_classes=12'], "num_classes=12 does not match dataset 'digits'"),
    (['--config.optimizer=sgd'], "trained with other settings (optimizer 'adam' -> 'sgd'), and these cannot change"),
    (['--config.learning_rate=0.01', '--config.seed=3'], 'learning_rate 0.001 -> 0.01; seed 0 -> 3'),
    (['--config.image_size=32'], 'holds a checkpoint (step 6) of input_shape=[28, 28, 1]'),
    (['--config.model_kwargs.nosuchfield=1'], "model_kwargs.nosuchfield: 'lenet5' has no field 'nosuchfield'"),
]


@pytest.mark.parametrize('overrides,message', BAD_INPUTS, ids=[m for _, m in BAD_INPUTS])
def test_bad_input_is_one_sentence_and_damages_nothing(trained_workdir, overrides, message):
  before = tree_digest(trained_workdir)
  result = run_train(trained_workdir, *DIGITS, *overrides)
  assert_one_sentence(result, message)
  assert tree_digest(trained_workdir) == before


@pytest.mark.parametrize('config_file,message', [
    ('configs/missing.py', 'the --config file could not be loaded'),
    ('convjax/__init__.py', 'the --config file does not define get_config()'),
])
def test_bad_config_files(tmp_path, config_file, message):
  result = run_train(str(tmp_path / 'w'), f'--config={config_file}')
  assert result.returncode == 1 and message in result.stderr
  assert not os.path.exists(tmp_path / 'w')


def test_an_input_too_small_for_the_model_names_the_layer_and_creates_nothing(tmp_path):
  # Digits are 8x8 without --config.image_size; AlexNet's pools leave nothing of that.
  result = run_train(str(tmp_path / 'w'), '--config=configs/default.py', '--config.dataset=digits',
                     '--config.model=alexnet', '--config.batch_size=64')
  assert_one_sentence(result, 'layer Pool_2 (Pool) would output an empty map: 1x1x256 -> 0x0x256')
  assert not os.path.exists(tmp_path / 'w')


def test_start_over_moves_another_models_run_aside_intact(trained_workdir, tmp_path):
  workdir = str(tmp_path / 'w')
  shutil.copytree(trained_workdir, workdir)
  before = tree_digest(workdir)
  other_model = [*DIGITS, '--config.model=lenet5_1998', '--config.num_train_steps=3']
  refused = run_train(workdir, *other_model)
  assert refused.returncode == 1
  assert "of model='lenet5', but this run has model='lenet5_1998'" in refused.stderr
  assert 'or --start_over to move the old run aside' in refused.stderr
  assert tree_digest(workdir) == before

  result = run_train(workdir, *other_model, '--start_over')

  assert result.returncode == 0, result.stderr
  (moved,) = os.listdir(os.path.join(workdir, 'previous_runs'))
  assert f'moved the earlier run in {workdir} to ' in result.stdout
  assert tree_digest(os.path.join(workdir, 'previous_runs', moved)) == before
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['3']


def test_show_traceback_flag_shows_it(tmp_path):
  result = run_train(str(tmp_path), *DIGITS, '--config.model=lenet7', '--show_traceback')
  assert result.returncode != 0 and 'Traceback' in result.stderr


@pytest.mark.parametrize('script', ['experiments.train', 'experiments.compare',
                                    'experiments.benchmark', 'experiments.visualize',
                                    'experiments.similar', 'experiments.summary'])
def test_help_lists_show_traceback_and_has_no_joined_lines(script):
  result = subprocess.run([sys.executable, '-m', script, '--help'], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
  usage = result.stdout.split('\nflags:')[0]  # absl exits with 1 after --help.
  assert not re.search(r'\S {3,}\S', usage), usage  # A run of spaces inside a line: joined.
  assert '--[no]show_traceback' in result.stdout


def test_train_help_points_to_the_models_and_the_config_fields():
  result = subprocess.run([sys.executable, '-m', 'experiments.train', '--help'], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
  assert "python -m experiments.summary --model='*'" in result.stdout
  assert 'configs/default.py' in result.stdout

"""benchmarks.training_results: rows read from a workdir with the run's overrides, merged by
config, overrides, hardware and seed, the README's table with its spread over seeds (and held-out
speakers), and each run's curve."""
import json
import os

import pytest

from benchmarks import training_results as results
from configs import default


CONFIG = 'configs/default.py'


def finished_workdir(path, seed=0, accuracies=(0.80, 0.90), total_steps=200, **changes):
  """A workdir as training leaves it: config.json (configs/default.py with `changes`), and
  metrics.jsonl with its start and evaluations, one per 100 steps."""
  os.makedirs(path)
  config = default.get_config()
  config.seed = seed
  config.update(changes)
  with open(os.path.join(path, 'config.json'), 'w') as f:
    json.dump({**config.to_dict(), 'input_shape': [28, 28, 1], 'num_classes': 10}, f)
  with open(os.path.join(path, 'metrics.jsonl'), 'w') as f:
    f.write(json.dumps({'step': 0, 'event': 'start', 'total_steps': total_steps}) + '\n')
    for epoch, accuracy in enumerate(accuracies, 1):
      record = {'step': epoch * 100, 'epoch': float(epoch), 'test_accuracy': accuracy,
                'ema_test_accuracy': accuracy + 0.01, 'train_seconds': 10.0 * epoch}
      f.write(json.dumps(record) + '\n')
    f.write(json.dumps({**record, 'wall_seconds': 25.0}) + '\n')
  return str(path)


def test_row_reads_the_final_evaluation_and_counts_parameters(tmp_path):
  row = results.row_of(CONFIG, finished_workdir(tmp_path / 'run', seed=3), 'here', 'abc')
  assert (row['model'], row['params'], row['seed'], row['overrides'], row['test_accuracy'],
          row['ema_test_accuracy'], row['tta_test_accuracy'], row['wall_seconds']) == (
              'lenet5', 61_706, 3, '', 0.90, 0.91, '', 25.0)


def test_overrides_are_the_flags_that_change_the_config_file(tmp_path):
  workdir = finished_workdir(tmp_path / 'run', half_precision=True, num_epochs=60.0,
                             augment={'crop_padding': 2}, data_dir='/data', log_every_steps=7)
  row = results.row_of(CONFIG, workdir, 'here', 'abc')
  # Where the data came from and how often it logged cannot change a result: left out.
  assert row['overrides'] == ('--config.augment.crop_padding=2 --config.half_precision=True '
                              '--config.num_epochs=60.0')
  assert '| `configs/default.py --config.augment.crop_padding=2 --config.half_precision' in (
      results.markdown([row]))


def test_model_kwargs_are_written_one_key_at_a_time_as_the_command_line_sets_them(tmp_path):
  workdir = finished_workdir(tmp_path / 'run', model_kwargs={'pool_first': True})
  row = results.row_of(CONFIG, workdir, 'here', 'abc')
  assert row['overrides'] == '--config.model_kwargs.pool_first=True'


def test_a_time_budget_counts_only_when_it_stopped_the_run(tmp_path):
  finished = finished_workdir(tmp_path / 'finished', train_budget_seconds=100.0)
  stopped = finished_workdir(tmp_path / 'stopped', train_budget_seconds=100.0, total_steps=500)
  assert results.row_of(CONFIG, finished, 'here', 'abc')['overrides'] == ''
  assert results.row_of(CONFIG, stopped, 'here', 'abc')['overrides'] == (
      '--config.train_budget_seconds=100.0')


def test_unknown_config_file_is_refused(tmp_path):
  with pytest.raises(results.ResultError, match='not a config file'):
    results.row_of('configs/no_such.py', finished_workdir(tmp_path / 'run'), 'here', 'abc')


def test_unfinished_run_is_refused(tmp_path):
  path = tmp_path / 'run'
  os.makedirs(path)
  with pytest.raises(results.ResultError, match='holds no finished run'):
    results.row_of(CONFIG, str(path), 'here', 'abc')


def test_seeds_give_mean_and_spread_and_rows_replace_by_config_and_seed(tmp_path):
  rows = [results.row_of(CONFIG, finished_workdir(tmp_path / f'run{seed}', seed, (0.5, a)),
                         'here', 'abc') for seed, a in ((0, 0.90), (1, 0.92))]
  rerun = results.row_of(CONFIG, finished_workdir(tmp_path / 'again', 1, (0.5, 0.94)),
                         'here', 'abc')
  merged = results.merge(rows, [rerun])
  assert [r['test_accuracy'] for r in merged] == [0.90, 0.94]
  assert '| 0.9200 ± 0.0283 (2 seeds) |' in results.markdown(merged)


def test_other_hardware_or_overrides_make_rows_of_their_own(tmp_path):
  cpu = results.row_of(CONFIG, finished_workdir(tmp_path / 'cpu'), 'cpu', 'abc')
  gpu = results.row_of(CONFIG, finished_workdir(tmp_path / 'gpu', accuracies=(0.5, 0.96)),
                       'gpu', 'abc')
  bf16 = results.row_of(CONFIG, finished_workdir(tmp_path / 'bf16', half_precision=True), 'gpu',
                        'abc')
  merged = results.merge(results.merge([cpu], [gpu]), [bf16])
  assert [r['hardware'] for r in merged] == ['cpu', 'gpu', 'gpu']
  table = results.markdown(merged, results.PUBLISHED['fashion_mnist'])
  assert '| WRN-40-4 (published) | | | 0.967 |' in table
  assert '| 0.9000 |' in table and '| 0.9600 |' in table and 'half_precision=True` |' in table


def test_curve_is_drawn_beside_the_csv_named_by_config_and_overrides(tmp_path):
  plain, bf16 = (finished_workdir(tmp_path / name, **changes)
                 for name, changes in (('plain', {}), ('bf16', {'half_precision': True})))
  paths = [results.draw_curve(results.row_of(CONFIG, workdir, 'here', 'abc'), workdir,
                              str(tmp_path), 'fashion_mnist') for workdir in (plain, bf16)]
  assert paths == [str(tmp_path / 'fashion_mnist_default.png'),
                   str(tmp_path / 'fashion_mnist_default_half_precision-True.png')]
  assert all(open(path, 'rb').read(8) == b'\x89PNG\r\n\x1a\n' for path in paths)


def test_unknown_commit_is_refused():
  with pytest.raises(results.ResultError, match='names no commit'):
    results._commit('no-such-revision')  # pylint: disable=protected-access


def test_a_row_takes_the_commit_its_run_recorded_unless_told(tmp_path):
  recorded = finished_workdir(tmp_path / 'recorded')
  saved = json.load(open(os.path.join(recorded, 'config.json')))
  json.dump({**saved, 'commit': '0123456789ab'}, open(os.path.join(recorded, 'config.json'), 'w'))
  assert results.row_of(CONFIG, recorded, 'here', None)['commit'] == '0123456789ab'
  assert results.row_of(CONFIG, recorded, 'here', 'abc')['commit'] == 'abc'
  with pytest.raises(results.ResultError, match='records no commit'):
    results.row_of(CONFIG, finished_workdir(tmp_path / 'older'), 'here', None)


def test_speaker_folds_pool_into_one_row_and_stay_rows_of_their_own_in_the_csv(tmp_path):
  folds = [results.row_of(CONFIG, finished_workdir(tmp_path / name, accuracies=(0.5, accuracy),
                                                   data_split=f'speaker:{name}'), 'here', 'abc')
           for name, accuracy in (('theo', 0.90), ('lucas', 0.80))]
  official = results.row_of(CONFIG, finished_workdir(tmp_path / 'official'), 'here', 'abc')
  merged = results.merge([], folds + [official])
  assert len(merged) == 3
  table = results.markdown(merged)
  assert ('| `configs/default.py --config.data_split=speaker:NAME` | 0.8500 ± 0.0707 '
          '(2 held-out speakers) |') in table
  assert '| `configs/default.py` | 0.9000 |' in table


def test_runs_of_several_datasets_are_refused_in_one_command(tmp_path):
  workdirs = [finished_workdir(tmp_path / 'a'), finished_workdir(tmp_path / 'b', dataset='mnist')]
  assert results.dataset_of(workdirs[:1]) == 'fashion_mnist'
  with pytest.raises(results.ResultError, match='trained on fashion_mnist, mnist; give the runs'):
    results.dataset_of(workdirs)

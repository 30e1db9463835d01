"""benchmarks.fashion_mnist_results: rows read from a workdir, merged by config and seed, the
README's table with its spread over seeds, and each run's curve."""
import json
import os

import pytest

from benchmarks import fashion_mnist_results as results
from configs import default


def finished_workdir(path, seed=0, accuracies=(0.80, 0.90)):
  """A workdir as training leaves it: config.json, and metrics.jsonl with evaluations."""
  os.makedirs(path)
  config = default.get_config()
  config.model, config.seed = 'lenet5', seed
  with open(os.path.join(path, 'config.json'), 'w') as f:
    json.dump({**config.to_dict(), 'input_shape': [28, 28, 1], 'num_classes': 10}, f)
  with open(os.path.join(path, 'metrics.jsonl'), 'w') as f:
    for epoch, accuracy in enumerate(accuracies, 1):
      record = {'step': epoch * 100, 'epoch': float(epoch), 'test_accuracy': accuracy,
                'ema_test_accuracy': accuracy + 0.01, 'train_seconds': 10.0 * epoch}
      f.write(json.dumps(record) + '\n')
    f.write(json.dumps({**record, 'wall_seconds': 25.0}) + '\n')
  return str(path)


def test_row_reads_the_final_evaluation_and_counts_parameters(tmp_path):
  row = results.row_of('configs/x.py', finished_workdir(tmp_path / 'run'), 'here', 'abc')
  assert (row['model'], row['params'], row['test_accuracy'], row['ema_test_accuracy'],
          row['tta_test_accuracy'], row['wall_seconds']) == ('lenet5', 61_706, 0.90, 0.91, '', 25.0)


def test_unfinished_run_is_refused(tmp_path):
  path = tmp_path / 'run'
  os.makedirs(path)
  with pytest.raises(results.ResultError, match='holds no finished run'):
    results.row_of('configs/x.py', str(path), 'here', 'abc')


def test_seeds_give_mean_and_spread_and_rows_replace_by_config_and_seed(tmp_path):
  rows = [results.row_of('configs/x.py', finished_workdir(tmp_path / f'run{seed}', seed, (0.5, a)),
                         'here', 'abc') for seed, a in ((0, 0.90), (1, 0.92))]
  rerun = results.row_of('configs/x.py', finished_workdir(tmp_path / 'again', 1, (0.5, 0.94)),
                         'here', 'abc')
  merged = results.merge(rows, [rerun])
  assert [r['test_accuracy'] for r in merged] == [0.90, 0.94]
  assert '| 0.9200 ± 0.0283 (2 seeds) |' in results.markdown(merged)


def test_curve_is_drawn_beside_the_csv(tmp_path):
  path = results.draw_curve('configs/x.py', finished_workdir(tmp_path / 'run'), str(tmp_path))
  assert path == str(tmp_path / 'fashion_mnist_x.png')
  assert open(path, 'rb').read(8) == b'\x89PNG\r\n\x1a\n'


def test_unknown_commit_is_refused():
  with pytest.raises(results.ResultError, match='names no commit'):
    results._commit('no-such-revision')  # pylint: disable=protected-access

"""convjax's own training results, collected from finished workdirs, beside published ones.

  python -m benchmarks.training_results \
      --runs=configs/fashion_mnist_speedrun.py=workdirs/fashion_mnist_speedrun \
      --hardware="2 cores, Intel Xeon (Emerald Rapids)"

Each run (CONFIG_FILE=WORKDIR) adds or replaces one row of benchmarks/results/DATASET.csv (the
runs' dataset: fashion_mnist.csv, spoken_digit.csv, ...; --output names another file),
keyed by config file, overrides, hardware and seed, read from the workdir's own files: the final
evaluation of metrics.jsonl (plain, EMA and flip-TTA accuracy; train and wall seconds) and
config.json (model, seed, and every field). `overrides` are the run's changes to the config file
as it is in this checkout, written as the `--config.FIELD=VALUE` flags that make them, so a row
says the whole command. The commit is the one the run recorded (run_identity), or --commit for
runs trained before runs recorded one. The command then prints the README's table:
per config, overrides and hardware, the mean and spread over seeds (and over held-out speakers:
runs of `--config.data_split=speaker:NAME` pool into one row), then the dataset's published rows
(PUBLISHED), which are kept here, in the repository. Each run evaluated more than once also gets
its curve beside the CSV (unless --nocurves), DATASET_<config name>.png (plus the overrides, when
there are any): plain, EMA and flip-TTA test accuracy against epoch, titled with the run's seed
and hardware. A later run of the same config and overrides redraws it.
"""
import csv
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys

import ml_collections
from absl import app, flags

from convjax.analysis import plots, summary
from convjax.training import builder, config as config_lib, metrics, run_identity

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, 'benchmarks', 'results')
FIELDS = ('config', 'overrides', 'model', 'params', 'seed', 'epochs', 'test_accuracy',
          'ema_test_accuracy', 'tta_test_accuracy', 'train_seconds', 'wall_seconds', 'hardware',
          'commit', 'baseline_test_accuracy', 'test_AP', 'test_AP50', 'test_AP75')
# A detector's rows hold COCO's AP, AP50 and AP75 (pycocotools) where a classifier's hold accuracy.
DETECTION = ('test_AP', 'test_AP50', 'test_AP75')
# Published accuracies on each dataset's own test set, by dataset. Fashion-MNIST: the benchmark
# table of github.com/zalandoresearch/fashion-mnist (README, "Benchmark").
PUBLISHED = {'fashion_mnist': (
    ('2 conv + pooling (TensorFlow tutorial)', 0.916), ('AlexNet', 0.899), ('VGG16', 0.935),
    ('GoogLeNet', 0.937), ('ResNet18 (with augmentation)', 0.949), ('MobileNet', 0.950),
    ('DenseNet-BC (768K parameters)', 0.954), ('WRN-28-10', 0.959),
    ('WRN-28-10 + random erasing', 0.963), ('WRN-40-4', 0.967))}

flags.DEFINE_list('runs', [], 'CONFIG_FILE=WORKDIR pairs of finished runs to add.')
flags.DEFINE_string('hardware', '', 'Where the runs trained, in words.')
flags.DEFINE_string('output', None, 'The CSV to update; default: benchmarks/results/DATASET.csv '
                    'for the runs\' dataset.')
flags.DEFINE_bool('curves', True, 'Draw each run\'s test-accuracy curve beside the CSV.')
flags.DEFINE_string('commit', None, 'The commit the runs trained at; default: the one each run '
                    'recorded in its config.json.')
FLAGS = flags.FLAGS


# Fields that say where data is read from or how often progress is printed: they cannot change a
# result, so a row leaves them out of its overrides. The seed has its own column.
UNRECORDED = frozenset({'data_dir', 'log_every_steps', 'input_workers', 'prefetch_batches', 'seed'})


class ResultError(ValueError):
  """A run that cannot give a result row; the message says which and why."""


def file_config(config_file: str) -> ml_collections.ConfigDict:
  """get_config() of a config file, a path relative to the repository root or absolute."""
  path = os.path.join(ROOT, config_file)
  if not os.path.isfile(path):
    raise ResultError(f'{config_file} is not a config file of this checkout')
  spec = importlib.util.spec_from_file_location('_results_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def overrides_of(config_file: str, ran: ml_collections.ConfigDict, completed: bool) -> str:
  """The run's changes to its config file as `--config.FIELD=VALUE` flags ('' for none).

  A time budget (train_budget_seconds) that never stopped the run (`completed`) changed nothing,
  so it is left out too.
  """
  base, run = config_lib.flat(file_config(config_file)), config_lib.flat(ran)
  ignored = UNRECORDED | ({'train_budget_seconds'} if completed else set())
  return ' '.join(flag for field in base
                  if field in run and run[field] != base[field] and field not in ignored
                  for flag in _flags(field, base[field], run[field]))


def _flags(field: str, base, run) -> list[str]:
  """The flags that set `field` from `base` to `run`. model_kwargs, compared whole, is set one
  key at a time, as the command line does: --config.model_kwargs.dropout_rate=0.0."""
  if isinstance(base, dict) and isinstance(run, dict):
    return [f'--config.{field}.{key}={_flag_value(value)}' for key, value in run.items()
            if key not in base or base[key] != value]
  return [f'--config.{field}={_flag_value(run)}']


def _flag_value(value) -> str:
  return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def row_of(config_file: str, workdir: str, hardware: str, commit: str | None) -> dict:
  """Returns one CSV row from a finished workdir; `commit` None takes the one its run recorded."""
  records = metrics.read_metrics(workdir)
  evaluations = [r for r in records if 'test_accuracy' in r or 'test_AP' in r]
  if not evaluations or 'wall_seconds' not in evaluations[-1]:
    raise ResultError(f'{workdir} holds no finished run (no final evaluation with wall_seconds '
                      'in metrics.jsonl)')
  final = evaluations[-1]
  identity, config = run_identity.read(workdir)
  if commit is None and not identity.commit:
    raise ResultError(f'{workdir} records no commit (trained before runs recorded one); name it '
                      'with --commit')
  starts = [r for r in records if r.get('event') == 'start']
  completed = bool(starts) and final['step'] >= starts[-1]['total_steps']
  shape = identity.input_shape
  model = builder.create_model(config, identity.num_classes, shape)  # As training built it.
  return {'config': config_file, 'overrides': overrides_of(config_file, config, completed),
          'model': config.model,
          'params': summary.count_params(model, shape),
          'seed': config.seed, 'epochs': round(final['epoch'], 2),
          'test_accuracy': final.get('test_accuracy', ''),
          **{field: final.get(field, '') for field in DETECTION},
          'ema_test_accuracy': final.get('ema_test_accuracy', ''),
          'tta_test_accuracy': final.get('tta_test_accuracy', ''),
          'train_seconds': round(final['train_seconds'], 1),
          'wall_seconds': round(final['wall_seconds'], 1), 'hardware': hardware,
          'commit': commit or identity.commit,
          'baseline_test_accuracy': final.get('baseline_test_accuracy', '')}


def read_rows(path: str) -> list[dict]:
  if not os.path.exists(path):
    return []
  with open(path, newline='') as f:
    return list(csv.DictReader(f))


def _pooled(overrides: str) -> str:
  """overrides with any held-out speaker written as NAME, so that the folds of a
  speaker-held-out evaluation pool into one row as seeds do."""
  return re.sub(r'(--config\.data_split=speaker:)\S+', r'\1NAME', overrides)


def _group(row: dict) -> tuple[str, str, str]:
  """What a row's runs are pooled over: the same config file, overrides (any held-out speaker)
  and hardware."""
  return row['config'], _pooled(row['overrides']), row['hardware']


def merge(rows: list[dict], new: list[dict]) -> list[dict]:
  """rows with each new row replacing the one of the same config, overrides, hardware and seed."""
  key = lambda row: (row['config'], row['overrides'], row['hardware'], str(row['seed']))
  replaced = {key(row) for row in new}
  return [row for row in rows if key(row) not in replaced] + new


def write_rows(path: str, rows: list[dict]) -> None:
  """Writes the CSV whole to a temporary file first, so a failure leaves the old one intact."""
  temporary = path + '.tmp'
  with open(temporary, 'w', newline='') as f:
    writer = csv.DictWriter(f, FIELDS, restval='')  # Rows from before a field existed.
    writer.writeheader()
    writer.writerows(rows)
  os.replace(temporary, path)


def _spread(values: list[float], unit: str = 'seeds') -> str:
  """'mean' for one value, 'mean ± sample std (n unit)' for several."""
  if len(values) == 1:
    return f'{values[0]:.4f}'
  return f'{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f} ({len(values)} {unit})'


def markdown(rows: list[dict], published=()) -> str:
  """The README's table: this project's configs, then the published (name, accuracy) rows. Text
  runs add the character n-gram baseline's accuracy (config.baseline) in place of EMA and TTA."""
  text = any(row.get('baseline_test_accuracy') for row in rows)
  detection = any(row.get('test_AP') for row in rows)
  headline = ('AP',) if detection else ('test accuracy',)
  extra = ('AP50', 'AP75') if detection else ('n-gram baseline',) if text else ('EMA', 'flip TTA')
  lines = ['| ' + ' | '.join(('model', 'params', 'config', *headline, *extra, 'wall time',
                              'hardware', 'commit')) + ' |',
           '|' + '---|' * (7 + len(extra))]
  for key in dict.fromkeys(_group(row) for row in rows):
    group = [row for row in rows if _group(row) == key]
    unit = 'seeds' if key[1] == group[0]['overrides'] else 'held-out speakers'
    column = lambda field: (_spread([float(r[field]) for r in group], unit)
                            if all(r.get(field, '') != '' for r in group) else '')
    extras = ((column('test_AP50'), column('test_AP75')) if detection else
              (column('baseline_test_accuracy'),) if text else
              (column('ema_test_accuracy'), column('tta_test_accuracy')))
    walls = [float(r['wall_seconds']) for r in group]
    first = group[0]
    command = ' '.join(filter(None, (first['config'], key[1])))
    lines.append(f"| {first['model']} | {int(first['params']):,} | `{command}` "
                 f"| {column('test_AP' if detection else 'test_accuracy')} | {' | '.join(extras)} "
                 f"| {statistics.mean(walls):.1f} s "
                 f"| {first['hardware']} | {first['commit'][:7]} |")
  for name, accuracy in published:
    lines.append(f'| {name} (published) | | | {accuracy:.3f} |' + ' |' * (3 + len(extra)))
  return '\n'.join(lines)


def _commit(revision: str) -> str:
  """The full hash of a revision of this checkout (HEAD, a short hash)."""
  found = subprocess.run(['git', 'rev-parse', '--verify', '--quiet', f'{revision}^{{commit}}'],
                         cwd=ROOT, capture_output=True, text=True)
  if found.returncode:
    raise ResultError(f"--commit={revision} names no commit of this checkout")
  return found.stdout.strip()


CURVES = ('test_accuracy', 'ema_test_accuracy', 'tta_test_accuracy')


def draw_curve(row: dict, workdir: str, directory: str, dataset: str) -> str | None:
  """Plain, EMA and flip-TTA test accuracy against epoch, from the evaluations of the workdir
  that gave `row`, as DIRECTORY/<dataset>_<config name>[_<overrides>].png; None for a run
  evaluated only once."""
  records = [r for r in metrics.read_metrics(workdir) if 'test_accuracy' in r or 'test_AP' in r]
  if len(records) < 2:
    return None
  detection = 'test_AP' in records[-1]
  keys, measure = (DETECTION, 'COCO AP') if detection else (CURVES, 'test accuracy')
  label = lambda key: (key.removeprefix('test_') if detection else
                       key.replace('_test_accuracy', '').replace('test_accuracy', 'plain'))
  series = {label(key): ([r['epoch'] for r in records if key in r],
                         [r[key] for r in records if key in r]) for key in keys}
  name = os.path.splitext(os.path.basename(row['config']))[0]
  # '--config.half_precision=True' -> '_half_precision-True'.
  suffix = ''.join('_' + re.sub(r'[^\w.]+', '-', flag.removeprefix('--config.'))
                   for flag in row['overrides'].split())
  path = os.path.join(directory, f'{dataset}_{name}{suffix}.png')
  title = f"{' '.join(filter(None, (name, row['overrides'])))}, seed {row['seed']}: {measure}"
  if row['hardware']:
    title += f"\n{row['hardware']}"
  plots.curves({k: v for k, v in series.items() if v[0]}, 'epoch', measure, title, path)
  return path


def dataset_of(workdirs: list[str]) -> str:
  """The one dataset the runs in workdirs trained on; refuses runs of several."""
  found = sorted({run_identity.read(workdir)[0].dataset for workdir in workdirs})
  if len(found) != 1:
    raise ResultError(f"the runs trained on {', '.join(found) or 'nothing'}; give the runs of one "
                      'dataset per command')
  return found[0]


def main(argv):
  del argv
  try:
    pairs = [run.split('=', 1) for run in FLAGS.runs]
    if any(len(pair) != 2 for pair in pairs):
      raise ResultError(f'--runs takes CONFIG_FILE=WORKDIR pairs, got {FLAGS.runs}')
    commit = _commit(FLAGS.commit) if FLAGS.commit else None
    new = [row_of(config, workdir, FLAGS.hardware, commit) for config, workdir in pairs]
    dataset = dataset_of([workdir for _, workdir in pairs]) if pairs else None
    output = FLAGS.output or (dataset and os.path.join(RESULTS, f'{dataset}.csv'))
    if not output:
      raise ResultError('name the runs with --runs, or the CSV to print with --output')
  except (ResultError, OSError) as e:
    sys.exit(f'error: {e}')
  rows = merge(read_rows(output), new)
  if new:
    write_rows(output, rows)
  for row, (_, workdir) in zip(new, pairs if FLAGS.curves else ()):
    drawn = draw_curve(row, workdir, os.path.dirname(os.path.abspath(output)), dataset)
    if drawn:
      print(f'curve: {os.path.relpath(drawn, ROOT)}')
  name = os.path.splitext(os.path.basename(output))[0]
  print(markdown(rows, PUBLISHED.get(name, ())))


if __name__ == '__main__':
  app.run(main)

"""Architectures side by side: the same data, schedule, seed and budget, one row per model.

A comparison lives in one directory:

  DIR/comparison.json   the shared config, so a rerun cannot silently mix settings
  DIR/<model>/          each model's run, laid out as experiments.train lays it out, plus
  DIR/<model>/result.json   written last: its presence means the model is finished
  DIR/comparison.csv, DIR/comparison.md, DIR/*.png

Rerunning skips finished models and resumes unfinished ones from their checkpoints.
"""
import csv
import io
import json
import math
import os
from typing import Callable

import ml_collections

from convjax.analysis import plots, summary
from convjax.training import builder, config as config_lib, loop, metrics

COLUMNS = ('model', 'params', 'flops_per_image', 'train_images_per_sec', 'eval_images_per_sec',
           'peak_memory_bytes', 'train_seconds', 'time_to_target_seconds', 'test_accuracy',
           'test_top5_accuracy')
RESULT_FILE = 'result.json'
CONFIG_FILE = 'comparison.json'
PLOTS = ('accuracy_vs_time.png', 'accuracy_vs_epoch.png', 'accuracy_vs_params.png',
         'accuracy_vs_flops.png')
# Fields that may differ between reruns of one comparison without changing its results.
_FREE_FIELDS = ('model', 'log_every_steps', 'input_workers', 'prefetch_batches')
NOTES = ('flops_per_image: forward pass, 1 multiply-add = 2 FLOPs, counted layer by layer over '
         'conv and dense layers (convjax.analysis.summary). peak_memory_bytes: per device, from XLA\'s '
         'compiled train step (arguments + outputs + temporaries - donated buffers). '
         'train_images_per_sec excludes compilation, evaluation and checkpointing. '
         'time_to_target_seconds: training seconds at the first evaluation at or above the target.')


def model_config(base: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(base.to_dict())
  config.model = name
  return config


def check_same_config(workdir: str, base: ml_collections.ConfigDict) -> None:
  """Records the shared config in a new comparison; refuses a rerun whose config differs."""
  path = os.path.join(workdir, CONFIG_FILE)
  current = {k: v for k, v in json.loads(base.to_json()).items() if k not in _FREE_FIELDS}
  if os.path.exists(path):
    with open(path) as f:
      recorded = json.load(f)
    changed = sorted(k for k in set(recorded) | set(current) if recorded.get(k) != current.get(k))
    if changed:
      raise config_lib.ConfigError(
          f'{workdir} holds a comparison run with a different config ({", ".join(changed)}); '
          'use another --workdir, or the same settings to resume it')
    return
  os.makedirs(workdir, exist_ok=True)
  metrics.write_json(path, current)


def run_model(config: ml_collections.ConfigDict, workdir: str, target_accuracy: float | None,
              log: Callable[[str], None] = print) -> dict:
  """Trains and evaluates config.model in workdir unless it has finished; returns its row.

  time_to_target_seconds is read from the run's evaluations every time, so a rerun with another
  target answers without training again.
  """
  result_path = os.path.join(workdir, RESULT_FILE)
  if os.path.exists(result_path):
    log(f'{config.model}: finished earlier, skipped (delete {workdir} to rerun it)')
    with open(result_path) as f:
      row = json.load(f)
  else:
    row = _train_row(config, workdir)
    metrics.write_json(result_path, row)
  row['time_to_target_seconds'] = time_to_target(metrics.read_metrics(workdir), target_accuracy)
  return row


def _train_row(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains config.model in workdir (resuming it if it has checkpoints) and returns its row."""
  result = loop.train_and_evaluate(config, workdir)
  identity = result.identity
  model = builder.create_model(config, identity.num_classes, identity.input_shape)
  final = result.metrics
  return {
      'model': config.model,
      'params': summary.count_params(model, identity.input_shape),
      'flops_per_image': summary.flops_per_image(model, identity.input_shape),
      'train_images_per_sec': _rate(workdir, result.train_images_per_sec),
      'eval_images_per_sec': final.get('eval_images_per_sec'),
      'peak_memory_bytes': _logged(workdir, result.peak_memory_bytes, 'peak_memory_bytes'),
      'train_seconds': final['train_seconds'],
      'test_accuracy': final['test_accuracy'],
      'test_top5_accuracy': final['test_top5_accuracy'],
  }


def _rate(workdir: str, measured: float) -> float | None:
  """Returns this run's train images/s, `measured`; when it trained nothing (a resumed, finished
  run, measured nan), the mean of the logged intervals."""
  if math.isfinite(measured):
    return measured
  logged = [r['images_per_sec'] for r in metrics.read_metrics(workdir) if 'images_per_sec' in r]
  return sum(logged) / len(logged) if logged else None


def _logged(workdir: str, measured, key: str):
  """Returns `measured`; when this run measured nothing (a resumed, finished run), the last
  logged value of `key`."""
  if measured is not None:
    return measured
  logged = [r[key] for r in metrics.read_metrics(workdir) if key in r]
  return logged[-1] if logged else None


def evaluations(records: list[dict]) -> list[dict]:
  """The metrics.jsonl records that hold a test evaluation, in step order."""
  return [r for r in records if 'test_accuracy' in r and 'train_seconds' in r]


def time_to_target(records: list[dict], target: float | None) -> float | None:
  """Training seconds at the first evaluation reaching `target` test accuracy; None if never."""
  if target is None:
    return None
  return next((r['train_seconds'] for r in evaluations(records) if r['test_accuracy'] >= target),
              None)


def write_tables(rows: list[dict], workdir: str) -> str:
  """comparison.csv (raw numbers) and comparison.md (rounded); returns the markdown."""
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, COLUMNS, lineterminator='\n')
  writer.writeheader()
  writer.writerows({k: '' if row[k] is None else row[k] for k in COLUMNS} for row in rows)
  metrics.write_text(os.path.join(workdir, 'comparison.csv'), buffer.getvalue())
  text = f'{markdown(rows)}\n\n{NOTES}\n'
  metrics.write_text(os.path.join(workdir, 'comparison.md'), text)
  return text


def markdown(rows: list[dict]) -> str:
  """Returns the comparison table in markdown, one row per model, figures rounded; a row maps
  each of COLUMNS to its value (None for none)."""
  return summary.markdown_table(list(COLUMNS), [[_format(k, row[k]) for k in COLUMNS]
                                                for row in rows])


def _format(column: str, value) -> str:
  if value is None:
    return ''
  if column in ('params', 'flops_per_image', 'peak_memory_bytes'):
    return f'{int(value):,d}'
  if column.endswith('accuracy'):
    return f'{value:.4f}'
  if isinstance(value, float):
    return f'{value:,.1f}'
  return str(value)


def write_plots(rows: list[dict], workdir: str) -> dict:
  """The four comparison PNGs in workdir; returns their figures by path."""
  paths = [os.path.join(workdir, name) for name in PLOTS]
  curves = {row['model']: evaluations(metrics.read_metrics(os.path.join(workdir, row['model'])))
            for row in rows}
  xy = lambda key: {name: ([r[key] for r in evals], [r['test_accuracy'] for r in evals])
                    for name, evals in curves.items()}
  final = lambda key: {row['model']: (row[key], row['test_accuracy']) for row in rows}
  return dict(zip(paths, [
      plots.curves(xy('train_seconds'), 'training time (s)', 'test accuracy',
                   'Test accuracy against training time', paths[0]),
      plots.curves(xy('epoch'), 'epoch', 'test accuracy', 'Test accuracy against epoch',
                   paths[1]),
      plots.scatter(final('params'), 'parameters', 'final test accuracy',
                    'Final accuracy against parameters', paths[2]),
      plots.scatter(final('flops_per_image'), 'forward FLOPs per image', 'final test accuracy',
                    'Final accuracy against FLOPs', paths[3])]))


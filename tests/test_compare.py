"""experiments.compare and experiments.benchmark as users run them: every column, file and plot,
resumption, refusals; and the training budget they rely on."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from convjax import models
from convjax.analysis import benchmark, compare, summary
from convjax.training import loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--dataset=digits', '--config.image_size=28', '--config.batch_size=32',
        '--config.eval_batch_size=120', '--config.num_train_steps=8', '--config.eval_every_steps=4']


def run(module, *args):
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2')
  return subprocess.run([sys.executable, '-m', module, *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)


MODELS = '--models=lenet5,lenet5_1998'


def snapshot(directory):
  return {os.path.join(root, name): os.stat(os.path.join(root, name)).st_mtime_ns
          for root, _, files in os.walk(directory) for name in files}


@pytest.fixture(scope='module')
def comparison(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('compare'))
  result = run('experiments.compare', MODELS, f'--workdir={workdir}',
               '--target_accuracy=0.2', *TINY)
  assert result.returncode == 0, result.stderr
  return workdir, result.stdout


@pytest.mark.slow
def test_comparison_writes_every_column_for_every_model(comparison):
  workdir, stdout = comparison
  with open(os.path.join(workdir, 'comparison.csv')) as f:
    rows = list(csv.DictReader(f))
  assert [r['model'] for r in rows] == ['lenet5', 'lenet5_1998']
  assert tuple(rows[0]) == compare.COLUMNS
  for row in rows:
    model = models.create(row['model'], 10, input_shape=(28, 28, 1))
    assert int(row['params']) == summary.count_params(model, (28, 28, 1))
    assert int(row['flops_per_image']) == summary.flops_per_image(model, (28, 28, 1))
    for column in ('train_images_per_sec', 'eval_images_per_sec', 'peak_memory_bytes',
                   'train_seconds', 'test_accuracy', 'test_top5_accuracy'):
      assert float(row[column]) > 0, column
    assert float(row['test_top5_accuracy']) >= float(row['test_accuracy'])
    # Reached or not, the time comes from an evaluation record of that run.
    evals = compare.evaluations(json.loads(l) for l in open(
        os.path.join(workdir, row['model'], 'metrics.jsonl')))
    hits = [r['train_seconds'] for r in evals if r['test_accuracy'] >= 0.2]
    assert row['time_to_target_seconds'] == (str(hits[0]) if hits else '')
  markdown = open(os.path.join(workdir, 'comparison.md')).read()
  assert markdown.startswith('| ' + ' | '.join(compare.COLUMNS) + ' |')
  assert '| lenet5 | 61,706 | 833,040 |' in markdown and markdown.split('\n\n')[0] in stdout


@pytest.mark.slow
def test_every_plot_is_a_png_with_one_series_per_model(comparison):
  workdir, _ = comparison
  rows = [json.load(open(os.path.join(workdir, m, compare.RESULT_FILE)))
          for m in ('lenet5', 'lenet5_1998')]
  figures = compare.write_plots(rows, workdir)
  assert sorted(os.path.basename(p) for p in figures) == sorted(compare.PLOTS)
  for path, fig in figures.items():
    image = Image.open(path)
    assert image.format == 'PNG' and min(image.size) > 100
    assert np.asarray(image.convert('L')).std() > 0  # Not a blank canvas.
    ax = fig.axes[0]
    series = ax.get_lines() if 'time' in path or 'epoch' in path else ax.collections
    assert len(series) == 2, path
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ['lenet5', 'lenet5_1998']
  time_curve = figures[os.path.join(workdir, 'accuracy_vs_time.png')].axes[0].get_lines()[0]
  assert len(time_curve.get_xdata()) == 2  # Evaluations at steps 4 and 8.


@pytest.mark.slow
def test_rerun_skips_finished_models_and_changes_nothing(comparison):
  workdir, _ = comparison
  models_before = {m: snapshot(os.path.join(workdir, m)) for m in ('lenet5', 'lenet5_1998')}
  result = run('experiments.compare', MODELS, f'--workdir={workdir}',
               '--target_accuracy=0.2', *TINY)
  assert result.returncode == 0, result.stderr
  assert result.stdout.count('finished earlier, skipped') == 2
  assert {m: snapshot(os.path.join(workdir, m)) for m in models_before} == models_before


@pytest.mark.slow
@pytest.mark.parametrize('args,message', [
    (['--config.num_train_steps=9'], 'holds a comparison run with a different config '
                                     '(num_train_steps)'),
    (['--models=lenet9'], "pattern 'lenet9' matches no model; valid models are: alexnet"),
    (['--target_accuracy=1.5'], '--target_accuracy must be in (0, 1], got 1.5'),
    (['--budget_seconds=-1'], '--budget_seconds must be positive, got -1.0'),
])
def test_bad_comparison_input_is_one_sentence_and_touches_nothing(comparison, args, message):
  workdir, _ = comparison
  before = snapshot(workdir)
  result = run('experiments.compare', MODELS, f'--workdir={workdir}', *TINY, *args)
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: ') and message in lines[0]
  assert snapshot(workdir) == before


@pytest.mark.slow
def test_benchmark_json_has_every_field(tmp_path):
  output = str(tmp_path / 'bench.json')
  result = run('experiments.benchmark', '--models=lenet5', '--batch_size=8', '--mode=both',
               '--num_devices=2', '--min_seconds=0.05', f'--output={output}')
  assert result.returncode == 0, result.stderr
  report = json.load(open(output))
  assert {'device', 'num_devices', 'peak_flops', 'peak_bandwidth', 'results'} <= set(report)
  assert report['num_devices'] == 2 and report['peak_flops'] > 0 and report['peak_bandwidth'] > 0
  assert [(r['model'], r['mode']) for r in report['results']] == [('lenet5', 'train'),
                                                                    ('lenet5', 'infer')]
  for row in report['results']:
    assert {'model', 'mode', 'batch_size', 'images_per_sec', 'step_ms', 'compile_seconds',
            'params', 'flops_per_image', 'flops_utilization'} <= set(row)
    assert (row['params'], row['flops_per_image'], row['batch_size']) == (61_706, 833_040, 8)
    step = row['step_ms']
    assert 0 < step['p10'] <= step['median'] <= step['p90']
    assert row['images_per_sec'] == pytest.approx(8 / (step['median'] / 1e3))
    passes = 3 if row['mode'] == 'train' else 1
    assert row['flops_utilization'] == pytest.approx(
        row['images_per_sec'] * 833_040 * passes / report['peak_flops'])


@pytest.mark.slow
def test_benchmark_refuses_a_batch_the_devices_do_not_divide(tmp_path):
  output = str(tmp_path / 'bench.json')
  result = run('experiments.benchmark', '--models=lenet5', '--batch_size=7', '--num_devices=2',
               f'--output={output}')
  assert result.returncode == 1 and 'not divisible by the 2 devices' in result.stderr
  assert not os.path.exists(output)


def test_time_steps_times_finished_work_only():
  import time
  sleeps = []
  def step(carry):
    time.sleep(0.01)
    sleeps.append(1)
    return carry + 1
  timing = benchmark.time_steps(step, 0, warmup=2, min_steps=5, min_seconds=0.0)
  assert len(timing.step_ms) == 5 and len(sleeps) == 1 + 2 + 5
  assert min(timing.step_ms) >= 10.0


@pytest.mark.slow
def test_a_training_budget_stops_early_and_a_rerun_does_not_train_more(tmp_path, digits_config):
  digits_config.train_budget_seconds = 1e-6  # Spent by the first timed step.
  first = loop.train_and_evaluate(digits_config, str(tmp_path))
  assert first.step == 2 and first.metrics['train_seconds'] > 0
  records = [json.loads(l) for l in open(tmp_path / 'metrics.jsonl')]
  assert records[-1]['step'] == 2 and 'test_accuracy' in records[-1]
  again = loop.train_and_evaluate(digits_config, str(tmp_path))
  assert again.step == 2 and again.metrics['test_accuracy'] == first.metrics['test_accuracy']
  results = lambda: [r for r in map(json.loads, open(tmp_path / 'metrics.jsonl')) if 'event' not in r]
  assert results() == [r for r in records if 'event' not in r]  # Nothing trained or written.

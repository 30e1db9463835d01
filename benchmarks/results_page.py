"""docs/results.md, generated from the result files in benchmarks/results/: never edit it by hand.

  python -m benchmarks.results_page           # rewrites docs/results.md
  python -m benchmarks.results_page --check   # exits 1 when docs/results.md is out of date

Every figure on the page comes from a file here: fashion_mnist.csv, spoken_digit.csv,
moving_fashion_mnist.csv, fashion_mnist_scenes.csv, fortunes_language.csv, fortunes_topic.csv
and words_language.csv (training runs, written by benchmarks.training_results), comparisons.csv
(one line per experiments.compare run, whose tables are DIRECTORY/comparison.csv),
finetune_digits.csv, the parity and PyTorch JSON files of
benchmarks.torchvision_parity and benchmarks.vs_pytorch, and test_suite.csv. To add history, add
rows to those files and rerun the command.
"""
import csv
import functools
import json
import os
import statistics
import sys

from absl import app, flags

from benchmarks import training_results
from convjax.analysis import compare, summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, 'benchmarks', 'results')
PAGE = os.path.join(ROOT, 'docs', 'results.md')
# The PyTorch comparisons: file, and where and how it was measured.
SPEED_FILES = (
    ('vs_pytorch_224_xeon_onednn.json', '224x224 ImageNet-size models, fp32, train step, 2 cores '
     'of the Intel Xeon (Emerald Rapids), oneDNN convolutions, torchvision 0.29.1 on torch 2.14.1'),
    ('vs_pytorch_xeon_onednn.json', 'small models at their native input, fp32, train step, 2 '
     'cores of the Intel Xeon (Emerald Rapids), oneDNN convolutions'),
    ('vs_pytorch.json', "small models at their native input, fp32, train step, XLA's "
     'convolutions, before the oneDNN extension (hardware not recorded)'),
)

_CHECK = flags.DEFINE_bool('check', False, 'Exit 1 if docs/results.md differs from what the '
                           'result files give, instead of rewriting it.')


def read_csv(name: str) -> list[dict]:
  """Returns the rows of benchmarks/results/NAME as dicts of strings."""
  with open(os.path.join(RESULTS, name), newline='') as f:
    return list(csv.DictReader(f))


def _number(text: str):
  return None if text == '' else float(text)


def fashion_mnist_section() -> str:
  rows = read_csv('fashion_mnist.csv')
  return '\n'.join([
      '## Training runs on Fashion-MNIST',
      '',
      'One row per config, overrides and hardware (seeds pooled: mean ± sample std); the config',
      'column is the whole command. Every figure is on the full 10,000-image test set; wall time',
      'runs from start to the final figures. Source: `fashion_mnist.csv`, one row per run with its',
      'seed and commit. The published rows are the benchmark table of',
      '[zalandoresearch/fashion-mnist](https://github.com/zalandoresearch/fashion-mnist#benchmark).',
      '',
      training_results.markdown(rows, training_results.PUBLISHED['fashion_mnist'])])


def spoken_digit_section() -> str:
  rows = read_csv('spoken_digit.csv')
  return '\n'.join([
      '## Training runs on spoken digits',
      '',
      'The Free Spoken Digit Dataset ([sound.md](sound.md)), with the config\'s',
      '`--config.data_dir` pointing at a copy of its recordings. Official split: 2,700 training',
      'and 300 test clips. `--config.data_split=speaker:NAME`: the six speaker-held-out folds',
      '(train on five speakers, test on all 500 clips of the sixth), pooled as mean ± sample std',
      'over the held-out speakers; wall time is the mean per fold (the folds at 5404562 shared the',
      'two cores with other work at times: their wall times are upper bounds). Source:',
      '`spoken_digit.csv`, one row per run.',
      '',
      training_results.markdown(rows)])


def moving_fashion_mnist_section() -> str:
  rows = read_csv('moving_fashion_mnist.csv')
  return '\n'.join([
      '## Training runs on Moving Fashion-MNIST',
      '',
      'Clips made from Fashion-MNIST with synthetic motion ([video.md](video.md)): 12,000 training',
      'and 2,000 test clips, the label the moving garment of two. A model blind to motion can reach',
      'at most 0.5. The runs at d7f51a3 shared the two cores with other work at times, so their',
      'wall times are upper bounds. Source: `moving_fashion_mnist.csv`, one row per run.',
      '',
      training_results.markdown(rows)])


def scenes_section() -> str:
  rows = read_csv('fashion_mnist_scenes.csv')
  return '\n'.join([
      '## Detection runs on Fashion-MNIST scenes',
      '',
      'Scenes of 1 to 6 real Fashion-MNIST items in synthetic 128x128 layouts',
      '([detection.md](detection.md)): 12,000 training and 1,000 test scenes. COCO AP (IoU',
      "0.50:0.95), AP50 and AP75 by pycocotools on the whole test set. Published anchors on COCO",
      'itself: FCOS R-50-FPN 37.1 AP (38.7 improved; Tian et al. 2019), CenterNet ResNet-18 28.1 AP',
      '(Zhou et al. 2019). Both runs trained from their commit\'s code before it was committed;',
      'the one at 4887e35 shared the two cores with tests for part of its run, so its wall time is',
      'an upper bound. Source: `fashion_mnist_scenes.csv`, one row per run.',
      '',
      training_results.markdown(rows)])


def text_section(dataset: str, title: str, what: str, note: str = '') -> str:
  rows = read_csv(f'{dataset}.csv')
  return '\n'.join([
      f'## Training runs on {title}',
      '',
      f'{what} as UTF-8 bytes ([text.md](text.md)); about 10% of the distinct texts are test',
      'texts, by hash. The n-gram baseline is a character 1- to 3-gram logistic regression',
      'trained in the same command on the same bytes. Source: '
      f'`{dataset}.csv`, one row per run.{note}',
      '',
      training_results.markdown(rows)])


def comparisons_section() -> str:
  parts = ['## Architectures compared on Fashion-MNIST', '',
           '`python -m experiments.compare` runs; each table is that run\'s `comparison.csv`.',
           compare.NOTES]
  for entry in read_csv('comparisons.csv'):
    rows = read_csv(os.path.join(entry['directory'], 'comparison.csv'))
    table = compare.markdown([{k: (v if k == 'model' else _number(v)) for k, v in row.items()}
                              for row in rows])
    hardware = entry['hardware'] or 'hardware not recorded'
    parts += ['', f"### {entry['title']}", '', f"`{entry['command']}`", '',
              f"{hardware}; {entry['note']}.", '', table]
  return '\n'.join(parts)


def finetune_section() -> str:
  rows = read_csv('finetune_digits.csv')
  lines = ['## Fine-tuning on scikit-learn\'s digits', '',
           'LeNet-5 started from a Fashion-MNIST workdir (`--config.init_from`) or at random, then',
           'trained 10 epochs on digits at 28x28 (1,438 training, 359 test images), as',
           '`python -m experiments.train --config=configs/default.py --config.dataset=digits',
           '--config.image_size=28 --config.model=MODEL [--config.init_from=WORKDIR]',
           '[--config.freeze=backbone --config.learning_rate=LR]`. Source: `finetune_digits.csv`.',
           '']
  group = lambda r: (r['start'], r['freeze'], r['learning_rate'], r['hardware'])
  table = []
  for start, freeze, rate, hardware in dict.fromkeys(map(group, rows)):
    seeds = [r for r in rows if group(r) == (start, freeze, rate, hardware)]
    accuracies = ', '.join(f"{float(r['test_accuracy']):.4f} ({r['seed']})" for r in seeds)
    trained = 'the head only' if freeze == 'backbone' else 'every layer'
    table.append([start, trained, f'{float(rate):g}', accuracies, hardware or 'not recorded'])
  header = ['start', 'layers trained', 'learning rate', 'test accuracy by seed', 'hardware']
  return '\n'.join(lines + [summary.markdown_table(header, table)])


def parity_section() -> str:
  lines = ['## Imported torchvision and timm weights', '',
           'Each model built by torchvision (or timm) with random weights, biases and batch-norm',
           'statistics, imported with `models.torchvision_weights.load_torch`, and both frameworks',
           'classifying the same two 224x224 images (`python -m benchmarks.torchvision_parity',
           '[--library=timm]`). Relative: the largest logit difference over the largest logit.',
           '']
  table = []
  for library, name in (('torchvision', 'torchvision_parity.json'), ('timm', 'timm_parity.json')):
    with open(os.path.join(RESULTS, name)) as f:
      table += [[library, model] + [f'{row[k]:.1e}' for k in
                                    ('max_abs_difference', 'max_abs_logit', 'relative')]
                for model, row in sorted(json.load(f).items())]
  header = ['library', 'model', 'largest logit difference', 'largest logit', 'relative']
  return '\n'.join(lines + [summary.markdown_table(header, table)])


def speed_section() -> str:
  lines = ['## Train-step speed against PyTorch', '',
           'Images/s of the same train step in convjax and in PyTorch, measured in alternating',
           'processes (`python -m benchmarks.vs_pytorch`); the median round of each, and their',
           'ratio (above 1: convjax is faster).']
  for name, setting in SPEED_FILES:
    with open(os.path.join(RESULTS, name)) as f:
      results = json.load(f)
    table = [[model, str(row['batch_size']), f"{row['convjax']:,.0f}", f"{row['pytorch']:,.0f}",
              f"{row['ratio']:.2f}"] for model, row in results.items()]
    ratios = [row['ratio'] for row in results.values()]
    if len(ratios) > 1:
      table.append(['geometric mean', '', '', '', f'{statistics.geometric_mean(ratios):.2f}'])
    header = ['model', 'batch', 'convjax images/s', 'PyTorch images/s', 'ratio']
    lines += ['', f'`{name}`: {setting}.', '', summary.markdown_table(header, table)]
  return '\n'.join(lines)


def test_suite_section() -> str:
  lines = ['## The test suite', '',
           'Wall time of the test commands (first run, and a rerun that finds the compilation cache',
           'warm). Source: `test_suite.csv`.', '']
  seconds = lambda text: f'{float(text):.0f} s' if text else ''
  table = [[f"`{row['command']}`", row['tests'], seconds(row['first_run_seconds']),
            seconds(row['rerun_seconds']), row['hardware'], row['commit'], row['note']]
           for row in read_csv('test_suite.csv')]
  header = ['command', 'tests', 'first run', 'rerun', 'hardware', 'commit', 'note']
  return '\n'.join(lines + [summary.markdown_table(header, table)])


def render() -> str:
  """Returns docs/results.md as the result files give it."""
  trained = [(name, section) for name, section in (
      ('moving_fashion_mnist', moving_fashion_mnist_section),
      ('fashion_mnist_scenes', scenes_section),
      ('fortunes_language', functools.partial(
          text_section, 'fortunes_language', 'quotes in 12 languages',
          "Debian's fortune quotes, the label the language,",
          ' The char_cnn run at 3e8dc37 shared the two cores with other work for part of its run,\n'
          'so its wall time is an upper bound.')),
      ('fortunes_topic', functools.partial(
          text_section, 'fortunes_topic', 'English quotes by topic',
          "Debian's English fortune quotes, the label one of 17 fortune files,")),
      ('words_language', functools.partial(
          text_section, 'words_language', 'words in 14 languages',
          "Single words from Debian's word lists, the label the language,")))
             if os.path.exists(os.path.join(RESULTS, f'{name}.csv'))]  # Datasets with results.
  sections = [fashion_mnist_section(), spoken_digit_section(),
              *(section() for _, section in trained), comparisons_section(), finetune_section(),
              parity_section(), speed_section(), test_suite_section()]
  header = ('# Results\n\nGenerated by `python -m benchmarks.results_page` from the files in '
            '`benchmarks/results/`;\ndo not edit it by hand. Hardware is named on every row; '
            '"2 cores" is a 2-core\nvirtual machine with 24 GiB of memory and no GPU.\n')
  return '\n\n'.join([header.rstrip()] + sections) + '\n'


def main(argv):
  del argv
  page = render()
  if _CHECK.value:
    with open(PAGE) as f:
      if f.read() != page:
        sys.exit('error: docs/results.md is out of date; run python -m benchmarks.results_page')
    return
  with open(PAGE + '.tmp', 'w') as f:
    f.write(page)
  os.replace(PAGE + '.tmp', PAGE)
  print(f'wrote {os.path.relpath(PAGE, ROOT)}')


if __name__ == '__main__':
  app.run(main)

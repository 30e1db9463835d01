"""convjax against PyTorch on this machine: the same train step, alternated, and the ratio.

  pip install -r benchmarks/requirements.txt      # PyTorch, for this comparison only
  python -m benchmarks.vs_pytorch [--models=lenet5,resnet20] [--rounds=3]
      [--output=workdirs/vs_pytorch.json]
  python -m benchmarks.vs_pytorch --models=resnet18,resnet50,alexnet,vgg11_bn,densenet121
  python -m benchmarks.vs_pytorch --gpu      # ResNet-50 at 224 and ResNet-20, bf16, on a GPU

Each round runs `experiments.benchmark --mode=train` and then `benchmarks.pytorch` for every case,
each in a fresh process, so neither framework's threads or caches disturb the other's timing and
a slow spell of the machine hits both. The ratio is convjax's median images/s over PyTorch's,
medians taken over rounds; beside it, each side's peak resident memory (the most over rounds).
Cases: LeNet-5 at batch 256 on 28x28x1 and ResNet-20 at batch 128 on 32x32x3 by default, and five ImageNet architectures at batch 16 on 224x224x3 on request; all
float32. With several cases it also prints the ratios' geometric mean. convjax runs on the
device count that measured fastest for each model (CASES: one device for LeNet-5, AlexNet and
VGG-11-BN, one per core for the others); --num_devices overrides them all.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from absl import flags

from convjax import errors
from experiments import cli

# model -> (batch size, input shape, convjax devices; None = all local devices). AlexNet and VGG
# hold 58.6M and 123M fully connected weights: a second device doubles the optimizer's pass over
# them and adds an all-reduce of their gradients, and was measured 1.3x to 1.6x slower.
CASES = {'lenet5': (256, (28, 28, 1), 1), 'resnet20': (128, (32, 32, 3), None),
         **{name: (16, (224, 224, 3), None) for name in ('resnet18', 'resnet50', 'densenet121')},
         **{name: (16, (224, 224, 3), 1) for name in ('alexnet', 'vgg11_bn')},
         # PyTorch's side is torchvision's (benchmarks/requirements-torchvision.txt).
         **{name: (16, (224, 224, 3), None)
            for name in ('mobilenet_v2', 'efficientnet_b0', 'convnext_tiny')}}
DEFAULT_CASES = ('lenet5', 'resnet20')  # The 224x224 cases take minutes each: ask for them.
# With --gpu: bf16 compute with fp32 master weights on both sides (convjax --half_precision,
# PyTorch autocast), one GPU.
GPU_CASES = {'resnet50': (256, (224, 224, 3), 1), 'resnet20': (512, (32, 32, 3), 1)}

_MODELS = flags.DEFINE_list('models', None, 'Cases to run; default: lenet5 and resnet20 (with '
                            '--gpu: all of GPU_CASES). The 224x224 cases: resnet18, resnet50, '
                            'alexnet, vgg11_bn, densenet121, and with torchvision installed '
                            'mobilenet_v2, efficientnet_b0, convnext_tiny.')
_GPU = flags.DEFINE_bool('gpu', False, 'Run GPU_CASES on the GPU in bfloat16.')
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Alternating rounds; medians are taken over them.')
_MIN_SECONDS = flags.DEFINE_float('min_seconds', 3.0, 'Timed seconds per model, run and framework.')
_NUM_DEVICES = flags.DEFINE_integer('num_devices', None, 'convjax devices for every case.')
_OUTPUT = flags.DEFINE_string('output', None, 'Also write the rounds and ratios here as JSON.')


def _run(module: str, args: list[str]) -> dict:
  """Runs `python -m module args --output=TMP` and returns the JSON it wrote."""
  with tempfile.TemporaryDirectory() as tmp:
    output = os.path.join(tmp, 'result.json')
    subprocess.run([sys.executable, '-m', module, *args, f'--output={output}'], check=True,
                   stdout=subprocess.DEVNULL)
    with open(output, encoding='utf-8') as f:
      return json.load(f)


def _cases() -> dict:
  return GPU_CASES if _GPU.value else CASES


def _round(name: str) -> tuple[dict, dict]:
  """One alternation for case `name`: (convjax's result row, PyTorch's)."""
  batch, shape, devices = _cases()[name]
  common = [f'--models={name}', f'--batch_size={batch}', f'--min_seconds={_MIN_SECONDS.value}',
            '--input_shape=' + ','.join(map(str, shape))]
  devices = _NUM_DEVICES.value or devices
  ours = _run('experiments.benchmark',
              common + ['--mode=train'] + ([f'--num_devices={devices}'] if devices else []) +
              (['--half_precision'] if _GPU.value else []))
  theirs = _run('benchmarks.pytorch', common + (['--device=cuda', '--amp'] if _GPU.value else []))
  ours, theirs = ours['results'][0], theirs['results'][0]
  if ours['params'] != theirs['params']:
    raise errors.InvalidValueError(
        f"{name}: convjax has {ours['params']:,} parameters and the PyTorch "
        f"reference {theirs['params']:,}, so they are not the same architecture")
  return ours, theirs


def main(argv):
  del argv
  cases = _cases()
  names = _MODELS.value or (list(cases) if _GPU.value else list(DEFAULT_CASES))
  unknown = sorted(set(names) - set(cases))
  if unknown:
    raise errors.InvalidValueError(
        f"unknown case '{unknown[0]}'; valid cases are: {', '.join(cases)}")
  if _ROUNDS.value < 1:
    raise errors.InvalidValueError(f'--rounds must be at least 1, got {_ROUNDS.value}')
  report = {}
  print(f"{'model':10s} {'batch':>5s} {'convjax img/s':>14s} {'PyTorch img/s':>14s} {'ratio':>6s}"
        f"  peak memory MiB (convjax, PyTorch)")
  for name in names:
    rounds = [_round(name) for _ in range(_ROUNDS.value)]
    ours, theirs = (float(np.median([r['images_per_sec'] for r in side])) for side in zip(*rounds))
    # Each round is a fresh process, whose peak resident memory is this model's step's.
    memory = [max(r['peak_rss_bytes'] for r in side) / 2**20 for side in zip(*rounds)]
    report[name] = {'batch_size': cases[name][0], 'input_shape': list(cases[name][1]),
                    'rounds': [{'convjax': a['images_per_sec'], 'pytorch': b['images_per_sec']}
                               for a, b in rounds],
                    'convjax': ours, 'pytorch': theirs, 'ratio': ours / theirs,
                    'peak_rss_mib': {'convjax': memory[0], 'pytorch': memory[1]}}
    print(f'{name:10s} {cases[name][0]:5d} {ours:14,.1f} {theirs:14,.1f} {ours / theirs:6.2f}'
          f'  {memory[0]:8,.0f} {memory[1]:8,.0f}', flush=True)
  if len(report) > 1:
    ratios = [r['ratio'] for r in report.values()]
    print(f'geometric mean of the ratios: {float(np.exp(np.mean(np.log(ratios)))):.2f}, '
          f'lowest {min(ratios):.2f}')
  if _OUTPUT.value:
    from convjax.training import metrics
    metrics.write_json(_OUTPUT.value, report, make_dirs=True)


if __name__ == '__main__':
  cli.run(main)

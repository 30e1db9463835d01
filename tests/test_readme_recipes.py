"""The README's "Adding a model" recipe, followed literally in a copy of the repository: its code
blocks become the new file and the registry lines, the test tables get the entries it asks for,
and then the per-model tests, the summary command and a short training all have to pass."""
import os
import re
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # Every test here starts processes.

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Counted by hand from TinyCNN: conv 3x3 (9 * c_in * width + width) + dense (width * 10 + 10).
TINY_PARAMS = {'tiny_cnn': 9 * 1 * 8 + 8 + 8 * 10 + 10, 'tiny_cnn_wide': 9 * 1 * 64 + 64 + 64 * 10 + 10}


def readme_section(title: str) -> str:
  text = open(os.path.join(ROOT, 'README.md')).read()
  start = text.index(f'\n## {title}\n')
  end = text.find('\n## ', start + 1)
  return text[start:end if end > 0 else None]


def python_blocks(section: str) -> list[str]:
  return re.findall(r'```python\n(.*?)```', section, re.S)


def copy_repository(destination: str) -> None:
  listed = subprocess.run(['git', 'ls-files', '--cached', '--others', '--exclude-standard'],
                          cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
  for path in listed:
    if os.path.exists(os.path.join(ROOT, path)):
      os.makedirs(os.path.join(destination, os.path.dirname(path)), exist_ok=True)
      shutil.copy2(os.path.join(ROOT, path), os.path.join(destination, path))


def add_model_as_the_readme_says(repo: str) -> None:
  model_file, registry = python_blocks(readme_section('Adding a model'))[:2]
  path = re.search(r'`(convjax/models/\w+\.py)`', readme_section('Adding a model')).group(1)
  with open(os.path.join(repo, path), 'w') as f:
    f.write(model_file)
  imports = [line for line in registry.splitlines() if line.startswith('from ')]
  entries = registry.split('...,\n', 1)[1].rsplit('}', 1)[0]
  init = os.path.join(repo, 'convjax/models/__init__.py')
  source = open(init).read()
  source = source.replace('\n_REGISTRY: dict[str, ModelSpec] = {\n',
                          '\n_REGISTRY: dict[str, ModelSpec] = {\n' + entries, 1)
  # After the first import from the package, which may run over several lines in parentheses.
  source = re.sub(r'(\nfrom convjax\.models import (?:\([^)]*\)|[^(\n]*)\n)',
                  lambda match: match.group(1) + '\n'.join(imports) + '\n', source, count=1)
  open(init, 'w').write(source)
  # "Add its exact parameter count to EXPECTED_PARAMS and a tiny variant to TINY."
  tests = os.path.join(repo, 'tests/test_models.py')
  source = open(tests).read()
  source = source.replace("\n    'nin': nin_count(),\n",
                          f"\n    'nin': nin_count(),\n    'tiny_cnn': {TINY_PARAMS['tiny_cnn']}, "
                          f"'tiny_cnn_wide': {TINY_PARAMS['tiny_cnn_wide']},\n", 1)
  source = source.replace("\nTINY = {\n", "\nTINY = {\n    'tiny_cnn': dict(width=4),\n", 1)
  open(tests, 'w').write(source)


def run(repo: str, *args: str) -> subprocess.CompletedProcess:
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  return subprocess.run([sys.executable, *args], cwd=repo, env=env, capture_output=True,
                        text=True, timeout=600)


@pytest.fixture(scope='module')
def repo_with_tiny_cnn(tmp_path_factory):
  repo = str(tmp_path_factory.mktemp('repo'))
  copy_repository(repo)
  add_model_as_the_readme_says(repo)
  return repo


def test_the_per_model_tests_pass_for_a_model_added_as_the_readme_says(repo_with_tiny_cnn):
  result = run(repo_with_tiny_cnn, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
               'tests/test_models.py', '-k', 'tiny_cnn or registry_has_every')
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
  # Both models went through every per-model test: count, FLOPs, shape, purity, learning.
  passed = int(re.search(r'(\d+) passed', result.stdout).group(1))
  assert passed >= 2 * 3 + 1, result.stdout[-2000:]


def test_the_summary_and_training_commands_take_the_new_model(repo_with_tiny_cnn, tmp_path):
  summary = run(repo_with_tiny_cnn, '-m', 'experiments.summary', '--model=tiny_cnn')
  assert summary.returncode == 0, summary.stderr
  assert re.search(r'^total\s+170\b', summary.stdout, re.M), summary.stdout
  trained = run(repo_with_tiny_cnn, '-m', 'experiments.train', '--config=configs/default.py',
                '--config.model=tiny_cnn', '--config.dataset=digits', '--config.image_size=28',
                '--config.num_train_steps=3', '--config.num_devices=1',
                f'--workdir={tmp_path / "run"}')
  assert trained.returncode == 0, trained.stderr
  assert 'done: tiny_cnn on digits, test accuracy' in trained.stdout

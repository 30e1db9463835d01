"""The README stays a true front door: short, its commands name scripts, flags, configs, config
fields and models that exist, its results are the result files', and docs/results.md is what
its generator writes. All static: nothing here trains or starts a process."""
import ast
import importlib.util
import os
import re
import shlex

import pytest

from benchmarks import results_page
from convjax import models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(ROOT, 'README.md')).read()


def readme_commands() -> list[list[str]]:
  """Every `python -m MODULE ...` line in the README's bash blocks, split into words."""
  blocks = re.findall(r'```bash\n(.*?)```', README, re.S)
  lines = [line.split('&&')[-1].strip() for block in blocks for line in block.splitlines()]
  return [shlex.split(line) for line in lines if re.match(r'(\.venv/bin/)?python -m ', line)]


def defined_flags(module: str) -> set[str]:
  """The absl flags a script defines (DEFINE_*('name', ...)), plus those every script has."""
  tree = ast.parse(open(os.path.join(ROOT, *module.split('.')) + '.py').read())
  names = {node.args[0].value for node in ast.walk(tree)
           if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
           and node.func.attr.startswith('DEFINE') and node.args
           and isinstance(node.args[0], ast.Constant)}
  return names | {'show_traceback', 'help', 'helpfull'}


def load_config(path: str):
  spec = importlib.util.spec_from_file_location('_readme_config', os.path.join(ROOT, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def test_the_readme_is_at_most_250_lines():
  assert README.count('\n') <= 250


def test_the_readme_has_a_command_for_every_experiment_script():
  scripts = {name[:-3] for name in os.listdir(os.path.join(ROOT, 'experiments'))
             if name.endswith('.py') and name not in ('__init__.py', 'cli.py')}
  commanded = {words[2].split('.')[-1] for words in readme_commands()
               if words[2].startswith('experiments.')}
  assert scripts <= commanded, scripts - commanded


@pytest.mark.parametrize('words', readme_commands(), ids=lambda words: ' '.join(words)[:80])
def test_every_readme_command_names_what_exists(words):
  module = words[2]
  if module == 'pytest':
    assert words[-1] == 'tests' and os.path.isdir(os.path.join(ROOT, 'tests'))
    return
  assert os.path.exists(os.path.join(ROOT, *module.split('.')) + '.py'), module
  options = dict(word[2:].split('=', 1) if '=' in word else (word[2:], '')
                 for word in words[3:] if word.startswith('--'))
  config_flags = {k: v for k, v in options.items() if k.startswith('config.')}
  assert set(options) - set(config_flags) <= defined_flags(module), options
  if 'config' in options:
    config = load_config(options['config'])
    for field in config_flags:
      node = config
      for name in field.split('.')[1:]:
        assert name in node, f'{field} is no field of {options["config"]}'
        node = node[name]
  for flag in ('model', 'models'):
    if flag in options:
      assert models.match(options[flag])
  for flag in ('images', 'audio'):
    if flag in options:
      assert os.path.exists(os.path.join(ROOT, options[flag])), options[flag]


def test_docs_results_is_what_its_generator_writes():
  with open(results_page.PAGE) as f:
    assert f.read() == results_page.render(), 'run python -m benchmarks.results_page'


def test_every_accuracy_in_the_readme_results_is_in_the_result_files():
  table = README.split('## Results', 1)[1].split('\n## ', 1)[0]
  figures = re.findall(r'\b0\.9\d{3}(?: ± 0\.\d{4})?', table)
  assert len(figures) >= 8
  page = results_page.render()
  for figure in figures:
    assert figure in page, figure


def test_ci_runs_the_readmes_test_command():
  command = 'bash .ci/setup && .venv/bin/python -m pytest -q tests'
  assert command in README
  assert command in open(os.path.join(ROOT, '.ci', 'run')).read()

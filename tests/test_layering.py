"""The floor plan: each part of convjax imports only the parts below it, and importing has no side
effects. An AST walk over every module's imports, those inside functions included."""
import ast
import importlib
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / 'convjax'

# Each part and the parts it may import besides itself. Layers and models know nothing of devices,
# data or training; data knows devices but no model or run config; training assembles them all;
# analysis and deploy use trained runs, and nothing uses them.
ALLOWED = {
    'errors': set(),
    'parallel': {'errors'},
    'nn': {'errors'},
    'models': {'errors', 'nn'},
    'data': {'errors', 'parallel'},
    'training': {'errors', 'parallel', 'nn', 'models', 'data'},
    'analysis': {'errors', 'parallel', 'nn', 'models', 'data', 'training'},
    'deploy': {'errors', 'parallel', 'nn', 'models', 'data', 'training'},
}


def part_of(module: str) -> str:
  """'convjax.training.loop' -> 'training'; 'convjax' -> '' (the package itself)."""
  names = module.split('.')
  return names[1] if len(names) > 1 else ''


def imported_modules(source: str) -> list[str]:
  """Every convjax module or package that `source` imports, as a dotted name."""
  found = []
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      found += [alias.name for alias in node.names if alias.name.split('.')[0] == 'convjax']
    elif isinstance(node, ast.ImportFrom) and (node.module or '').split('.')[0] == 'convjax':
      if node.module == 'convjax':  # from convjax import errors, training, ...
        found += [f'convjax.{alias.name}' for alias in node.names]
      else:
        found.append(node.module)
  return found


def violations(module: str, source: str) -> list[str]:
  """The imports in `source` (the code of `module`) that reach a part it may not use."""
  part = part_of(module)
  if part == '':
    return [f'{module} imports {name}' for name in imported_modules(source)]
  return [f'{module} ({part}) imports {name} ({part_of(name)})'
          for name in imported_modules(source)
          if part_of(name) not in ALLOWED[part] | {part}]


def package_modules() -> dict[str, pathlib.Path]:
  modules = {}
  for path in sorted(PACKAGE.rglob('*.py')):
    parts = path.relative_to(ROOT).with_suffix('').parts
    modules['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = path
  return modules


def test_every_part_of_the_package_is_in_the_floor_plan():
  parts = {part_of(module) for module in package_modules()} - {''}
  assert parts == set(ALLOWED)


def test_no_part_imports_a_part_above_it():
  found = [v for module, path in package_modules().items()
           for v in violations(module, path.read_text())]
  assert not found, '\n'.join(found)


@pytest.mark.parametrize('module, source', [
    ('convjax.data.pipeline', 'from convjax.training import config as config_lib'),
    ('convjax.models.googlenet', 'from convjax.data import datasets'),
    ('convjax.training.builder', 'from convjax.analysis import summary'),
    ('convjax.models.resnet', 'def f():\n  from convjax import parallel'),
    ('convjax.nn.layers', 'import convjax.models.common'),
    ('convjax', 'from convjax import parallel'),
])
def test_the_check_catches_an_import_from_above(module, source):
  assert len(violations(module, source)) == 1


def test_every_module_imports():
  for module in package_modules():
    importlib.import_module(module)


def test_importing_convjax_changes_no_environment_and_starts_no_backend():
  modules = [module for module in package_modules() if module != 'convjax']
  code = ('import os\n'
          'before = dict(os.environ)\n'
          'import importlib, convjax\n'
          f'for name in {modules!r}:\n'
          '  importlib.import_module(name)\n'
          'from jax._src import xla_bridge\n'
          'print(dict(os.environ) == before, xla_bridge.backends_are_initialized())\n')
  result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, XLA_FLAGS=''))
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.split() == ['True', 'False']

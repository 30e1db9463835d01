"""Builds convjax's oneDNN extension: python -m convjax.nn.native.build [--force].

Compiles onednn_conv.cc (convolutions), onednn_norm.cc (batch normalisation), onednn_gelu.cc
(GELU, exact and tanh's), onednn_dense.cc (matrix products), fused_sgd.cc and fused_adamw.cc (the
SGD and AdamW updates in one pass) with g++ against jax's FFI headers and the pinned oneDNN wheels
of requirements.txt (onednn-cpu-gomp for the library, onednn-devel-cpu-gomp for the headers), into
convjax/nn/native/_onednn.so. It rebuilds only when a source, jaxlib or oneDNN changed (a stamp
file records them). It never fails the set-up: if the build is impossible, it prints one warning
line and convjax computes all of these with XLA.
"""
import hashlib
import importlib.metadata
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = [os.path.join(HERE, name) for name in ('onednn_conv.cc', 'onednn_norm.cc',
                                                   'onednn_gelu.cc', 'onednn_dense.cc',
                                                   'fused_sgd.cc', 'fused_adamw.cc')]
HEADERS = [os.path.join(HERE, name) for name in ('engine.h', 'guarded.h', 'team.h')]
OUTPUT = os.path.join(HERE, '_onednn.so')
STAMP = OUTPUT + '.stamp'
LIBRARY_PACKAGE, HEADER_PACKAGE = 'onednn-cpu-gomp', 'onednn-devel-cpu-gomp'


def _installed_file(package: str, suffix: str) -> str:
  """The absolute path of the first file of an installed distribution whose path ends in suffix."""
  distribution = importlib.metadata.distribution(package)
  for file in distribution.files or ():
    if str(file).endswith(suffix):
      return os.path.abspath(str(distribution.locate_file(file)))
  raise FileNotFoundError(f'{package} has no file ending in {suffix}')


def _paths() -> tuple[str, str]:
  """(oneDNN's include folder, the folder holding libdnnl.so)."""
  header = _installed_file(HEADER_PACKAGE, os.path.join('oneapi', 'dnnl', 'dnnl.hpp'))
  library = _installed_file(LIBRARY_PACKAGE, 'libdnnl.so.3')
  return os.path.dirname(os.path.dirname(os.path.dirname(header))), os.path.dirname(library)


COMPILER = 'g++'


def _command(include: str, library: str) -> list[str]:
  import jax  # pylint: disable=import-outside-toplevel
  # -ffp-contract=off: no fused multiply-adds, so the fused updates round each operation on its own.
  return [COMPILER, '-O2', '-std=c++17', '-ffp-contract=off', '-shared', '-fPIC', '-fopenmp',
          f'-I{jax.ffi.include_dir()}', f'-I{include}', *SOURCES, '-o', OUTPUT + '.tmp',
          f'-L{library}', '-l:libdnnl.so.3', f'-Wl,-rpath,{library}']


def _fingerprint(command: list[str]) -> str:
  versions = [importlib.metadata.version(p) for p in ('jaxlib', LIBRARY_PACKAGE, HEADER_PACKAGE)]
  digest = hashlib.sha256(repr((versions, command)).encode())
  for path in SOURCES + HEADERS:
    with open(path, 'rb') as source:
      digest.update(source.read())
  return digest.hexdigest()


def build(force: bool = False) -> bool:
  """Builds the extension if it is missing or stale; True if it is there afterwards."""
  try:
    command = _command(*_paths())
  except (importlib.metadata.PackageNotFoundError, FileNotFoundError) as error:
    print(f'warning: oneDNN extension not built ({error}); convjax will use XLA\'s convolutions',
          file=sys.stderr)
    return False
  fingerprint = _fingerprint(command)
  if not force and os.path.exists(OUTPUT) and os.path.exists(STAMP):
    with open(STAMP, encoding='utf-8') as stamp:
      if stamp.read() == fingerprint:
        return True
  try:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    failure = '' if result.returncode == 0 else (result.stderr.strip().splitlines() or ['?'])[0]
  except OSError as error:  # No compiler at all.
    failure = str(error)
  if failure:
    print(f'warning: oneDNN extension not built ({failure}); convjax will use XLA\'s '
          'convolutions', file=sys.stderr)
    return False
  os.replace(OUTPUT + '.tmp', OUTPUT)
  with open(STAMP, 'w', encoding='utf-8') as stamp:
    stamp.write(fingerprint)
  print(f'built {os.path.relpath(OUTPUT)}')
  return True


if __name__ == '__main__':
  build(force='--force' in sys.argv[1:])

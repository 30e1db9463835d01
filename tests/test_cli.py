"""experiments.cli's process set-up: the restart with TCMalloc or huge pages, and what each changes."""
import ctypes.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOW = ("import os, sys; sys.path.insert(0, '.'); from experiments import cli; "
        "print(os.getpid(), os.environ.get('GLIBC_TUNABLES'), flush=True); cli.with_fast_malloc()")
TCMALLOC = ctypes.util.find_library('tcmalloc_minimal')
# A large buffer allocated, written, freed and allocated and written again, as XLA:CPU does with
# its buffers every step; prints the page faults of the second writing.
REUSE = ('import ctypes, resource; libc = ctypes.CDLL(None); libc.malloc.restype = ctypes.c_void_p; '
         'libc.free.argtypes = [ctypes.c_void_p]; n = 256 << 20; p = libc.malloc(n); '
         'ctypes.memset(p, 1, n); libc.free(p); p = libc.malloc(n); '
         'before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt; ctypes.memset(p, 1, n); '
         'print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)')


def _run(code: str, **env) -> list[str]:
  environment = {k: v for k, v in os.environ.items()
                 if k not in ('GLIBC_TUNABLES', 'CONVJAX_HUGE_PAGES', 'CONVJAX_TCMALLOC', 'LD_PRELOAD')}
  result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                          env={**environment, **env}, timeout=60, check=True)
  return result.stdout.split()


@pytest.mark.slow
def test_the_process_restarts_once_with_the_same_pid_and_huge_pages():
  first_pid, first, second_pid, second = _run(SHOW)
  assert first_pid == second_pid and first == 'None' and second == 'glibc.malloc.hugetlb=1'


@pytest.mark.slow
def test_existing_tunables_are_kept_and_the_restart_can_be_turned_off():
  assert _run(SHOW, GLIBC_TUNABLES='glibc.malloc.arena_max=2')[3] == \
      'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1'
  assert len(_run(SHOW, CONVJAX_HUGE_PAGES='0')) == 2


SHOW_MALLOC = ("import os, sys; sys.path.insert(0, '.'); from experiments import cli; "
               "cli.with_fast_malloc(); print(os.environ.get('LD_PRELOAD'), "
               "any('tcmalloc' in line for line in open('/proc/self/maps')))")


@pytest.mark.slow
@pytest.mark.skipif(not TCMALLOC, reason='TCMalloc is not installed (.ci/setup installs it)')
def test_the_restart_runs_on_tcmalloc_unless_turned_off():
  assert _run(SHOW_MALLOC) == [TCMALLOC, 'True']
  assert _run(SHOW_MALLOC, CONVJAX_TCMALLOC='0') == ['None', 'False']


@pytest.mark.slow
@pytest.mark.skipif(not TCMALLOC, reason='TCMalloc is not installed (.ci/setup installs it)')
def test_tcmalloc_reuses_a_freed_large_buffer_without_page_faults():
  """glibc unmaps a freed buffer above 32 MB, so the next one faults in every page again."""
  glibc = int(_run(REUSE)[0])
  tcmalloc = int(_run(REUSE, LD_PRELOAD=TCMALLOC)[0])
  assert glibc > 10_000 and tcmalloc < 100, (glibc, tcmalloc)


def _transparent_huge_pages() -> str:
  try:
    with open('/sys/kernel/mm/transparent_hugepage/enabled', encoding='utf-8') as f:
      return f.read().split('[')[1].split(']')[0]
  except (OSError, IndexError):
    return 'never'


@pytest.mark.slow
@pytest.mark.skipif(_transparent_huge_pages() == 'never',
                    reason='this kernel has transparent huge pages turned off')
def test_huge_pages_cut_the_page_faults_of_a_large_fresh_buffer():
  """What XLA:CPU does every step: malloc a large buffer (mmap) and write all of it."""
  # Plain malloc through ctypes: NumPy asks for huge pages on its own large arrays.
  touch = ('import ctypes, resource; libc = ctypes.CDLL(None); libc.malloc.restype = ctypes.c_void_p; '
           'before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt; '
           'ctypes.memset(libc.malloc(64 << 20), 1, 64 << 20); '
           'print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)')
  plain = int(_run(touch)[0])
  huge = int(_run(touch, GLIBC_TUNABLES='glibc.malloc.hugetlb=1')[0])
  assert plain > 10_000 and huge < plain / 10, (plain, huge)


@pytest.mark.slow
@pytest.mark.parametrize('raised,stderr', [
    ("errors.UserError('the input is wrong')", 'error: the input is wrong'),
    ("ValueError('a bug')", 'error: ValueError: a bug (--show_traceback shows where)'),
    ("KeyError('k')", "error: KeyError: 'k' (--show_traceback shows where)")])
def test_only_user_errors_are_reported_as_the_users_mistake(raised, stderr):
  """Bad input is one sentence; anything else, such as a bug in a new model, shows its type and
  where to find the traceback."""
  code = ('import sys; sys.path.insert(0, "."); from convjax import errors; '
          'from experiments import cli\n'
          f'def main(argv):\n  raise {raised}\ncli.run(main)')
  result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, 'CONVJAX_HUGE_PAGES': '0'}, timeout=60)
  assert result.returncode == 1 and result.stderr.strip() == stderr, result.stderr

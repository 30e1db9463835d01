"""What every experiment script shares: bad input gets one clear sentence and exit status 1."""
import ast
import ctypes.util
import logging as std_logging
import os
import re
import sys
import warnings

from absl import app, flags, logging

from convjax import errors

_SHOW_TRACEBACK = flags.DEFINE_bool('show_traceback', False, 'Show full tracebacks on errors.')


# JAX appends this note, and a paragraph after it, to errors raised inside its transformations.
_JAX_TRACEBACK_NOTE = '\n--------------------\n'


def _fail(message: str) -> None:
  message = message.split(_JAX_TRACEBACK_NOTE)[0]
  print(f'error: {message}', file=sys.stderr)
  sys.exit(1)


_MODEL_KWARG = re.compile(r'--config\.model_kwargs\.(\w+)=(.*)$', re.DOTALL)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing, with config-file and override mistakes turned into one sentence."""
  model_kwargs = [m.groups() for m in map(_MODEL_KWARG.match, argv) if m]
  argv = [a for a in argv if not _MODEL_KWARG.match(a)]
  sys.argv[:] = [a for a in sys.argv if not _MODEL_KWARG.match(a)]  # config_flags reads it too.
  try:
    remaining = flags.FLAGS(argv)
    if 'config' in flags.FLAGS:
      flags.FLAGS['config'].value.keys()  # A config that failed to load raises only when used.
      _set_model_kwargs(flags.FLAGS['config'].value, model_kwargs)
    return remaining
  except flags.Error as e:
    _fail(str(e).splitlines()[0])
  except AttributeError as e:
    if 'get_config' in str(e):
      _fail('the --config file does not define get_config()')
    _fail_on_override(argv, e)
  except KeyError as e:
    _fail_on_override(argv, e)
  except (OSError, ImportError, SyntaxError) as e:  # config_flags: a config file that won't load.
    _fail(f'the --config file could not be loaded: {str(e).strip().splitlines()[-1].strip()}')


def _set_model_kwargs(config, pairs: list[tuple[str, str]]) -> None:
  """--config.model_kwargs.KEY=VALUE for any KEY: config_flags overrides only fields a config
  already has, and model_kwargs holds whatever fields the model takes (config.validate checks
  them against the model). VALUE is a Python literal (2, 0.5, True, (64, 128)) or else a string."""
  if pairs and 'model_kwargs' not in config:
    _fail('--config.model_kwargs.* needs a config with a model_kwargs field (configs/default.py)')
  for key, text in pairs:
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = {'true': True, 'false': False}.get(text.lower(), text)
    try:
      with config.model_kwargs.unlocked():
        config.model_kwargs[key] = value
    except TypeError as e:  # A key the config file set, given a value of another type.
      _fail(f'--config.model_kwargs.{key}={text}: {e}')


def _fail_on_override(argv: list[str], error: Exception) -> None:
  """config_flags raises AttributeError or KeyError for an override of a missing field."""
  message = str(error)
  field = re.search(r"(\w+)", message).group(1)
  override = next((a.split('=')[0] for a in argv
                   if re.match(rf'--config\.(.*\.)?{field}(=|$)', a)), f'--config.{field}')
  suggestion = re.search(r'Did you mean "(\w+)"', message)
  hint = f' (did you mean {suggestion.group(1)}?)' if suggestion else ''
  _fail(f'{override} names no field of the config{hint}')


def parse_shape(value: list[str] | None) -> tuple[int, int, int] | None:
  """An --input_shape list flag 'height,width,channels' as a tuple; None when unset."""
  if value is None:
    return None
  try:
    shape = tuple(int(v) for v in value)
  except ValueError:
    shape = ()
  if len(shape) != 3 or min(shape) <= 0:
    raise errors.InvalidValueError(
        f"--input_shape must be three positive integers height,width,channels, "
        f"got {','.join(value)}")
  return shape


def check_index(flag: str, value: int, size: int, what: str) -> None:
  """Raises InvalidValueError unless 0 <= value < size, naming the flag and the valid range."""
  if not 0 <= value < size:
    raise errors.InvalidValueError(f'--{flag}={value} is out of range: {what} has {size} images '
                                   f'(0 to {size - 1})')


def _silence_orbax_failure_echoes() -> None:
  """After a failed checkpoint read, TensorStore reads still in flight call back into the
  asyncio loop that Orbax has already closed, asyncio logs its unretrieved task errors, and
  Python warns of the abandoned coroutines at exit: echoes of an error that convjax reports
  itself in one sentence."""
  default = sys.unraisablehook

  def hook(unraisable):
    if not (unraisable.exc_type is RuntimeError and 'Event loop is closed' in str(unraisable.exc_value)):
      default(unraisable)
  sys.unraisablehook = hook
  std_logging.getLogger('asyncio').setLevel(std_logging.CRITICAL)
  # Reads that the failure cancelled are reported again at exit as coroutines never awaited.
  warnings.filterwarnings('ignore', message='coroutine .* was never awaited', category=RuntimeWarning)


HUGE_PAGES = 'glibc.malloc.hugetlb=1'
# Debian's libtcmalloc-minimal4 (.ci/setup installs it), by the name ctypes.util.find_library knows.
TCMALLOC = 'tcmalloc_minimal'
# TCMalloc reports every allocation above 1 GiB on stderr; a large net's step makes several.
_TCMALLOC_QUIET = {'TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD': str(1 << 50)}


def with_fast_malloc() -> None:
  """Restarts this process once, with TCMalloc as its malloc where it is installed, and glibc's
  malloc asking for transparent huge pages where it is not.

  XLA:CPU allocates each execution's buffers afresh. Above 32 MB glibc maps them with mmap and
  unmaps them when freed, so every step faults in and zeroes its buffers' pages again: 74,000
  faults a ResNet-20 step with 4 KiB pages, 1,300 huge ones (2.5 GiB) a DenseNet-121 step with
  2 MiB pages (PERFORMANCE.md). TCMalloc keeps freed memory for the next step: no faults, and
  DenseNet-121 trains 1.4x faster. Where it is missing, huge pages make one fault cover 2 MiB.
  Both take effect only at start-up, hence the restart: the same process id, interpreter and
  arguments. Child processes inherit both, so a benchmark's PyTorch peer runs on the same malloc.
  CONVJAX_TCMALLOC=0 keeps glibc's malloc (with huge pages); CONVJAX_HUGE_PAGES=0 skips the
  restart; elsewhere than Linux it does nothing.
  """
  tunables = os.environ.get('GLIBC_TUNABLES', '')
  if (not sys.platform.startswith('linux') or 'glibc.malloc.hugetlb' in tunables
      or os.environ.get('CONVJAX_HUGE_PAGES') == '0' or not getattr(sys, 'orig_argv', None)):
    return
  os.environ['GLIBC_TUNABLES'] = ':'.join(filter(None, [tunables, HUGE_PAGES]))
  tcmalloc = _tcmalloc_path()
  if tcmalloc and os.environ.get('CONVJAX_TCMALLOC') != '0':
    preload = os.environ.get('LD_PRELOAD', '')
    os.environ['LD_PRELOAD'] = ':'.join(filter(None, [tcmalloc, preload]))
    os.environ.update(_TCMALLOC_QUIET)
  sys.stdout.flush()
  sys.stderr.flush()
  os.execv(sys.executable, sys.orig_argv)


def _tcmalloc_path() -> str | None:
  """TCMalloc's shared library by its soname (the dynamic loader finds it), or None where it is
  not installed."""
  return ctypes.util.find_library(TCMALLOC)


def run(main) -> None:
  """app.run(main) with quiet library logs and no tracebacks unless --show_traceback, in a
  process with a malloc that keeps freed memory (`with_fast_malloc`) and whose CPU is split into one XLA
  device per core (parallel.use_cpu_cores).

  Expected errors print their message; anything else (a bug, a full disk) prints its type and
  message and points at --show_traceback. A run stopped by a signal after checkpointing exits
  with 128 + the signal's number; Ctrl-C outside the training loop exits with status 130.
  """
  with_fast_malloc()

  def guarded(argv):
    if not flags.FLAGS['verbosity'].present:
      logging.set_verbosity(logging.WARNING)  # Orbax and JAX log a lot at INFO.
      _silence_orbax_failure_echoes()
    # After flag parsing, so --help is fast; before JAX starts, so the CPU count can still change.
    from convjax import parallel
    from convjax.training import stopping
    parallel.use_cpu_cores()
    try:
      main(argv)
    except stopping.Stopped as e:
      print(e, flush=True)
      sys.exit(e.exit_status)
    except KeyboardInterrupt:
      if _SHOW_TRACEBACK.value:
        raise
      print('error: interrupted', file=sys.stderr)
      sys.exit(130)
    except Exception as e:  # pylint: disable=broad-except
      if _SHOW_TRACEBACK.value:
        raise
      if isinstance(e, errors.UserError):  # Bad input: its message is the whole story.
        _fail(str(e))
      first_line = (str(e).strip() or '(no message)').splitlines()[0]
      _fail(f'{type(e).__name__}: {first_line} (--show_traceback shows where)')
  # Listed by --help with the script's own flags, not only under --helpfull.
  flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS['show_traceback'])
  app.run(guarded, flags_parser=_parse_flags)

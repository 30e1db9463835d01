"""What every experiment script shares: one clear sentence on bad input, not a traceback."""
import sys

from absl import app, flags

_SHOW_TRACEBACK = flags.DEFINE_bool('show_traceback', False, 'Show full tracebacks on errors.')


def _expected_errors() -> tuple[type[Exception], ...]:
  from convjax import checkpoint, config, data, models, train
  return (config.ConfigError, models.UnknownModelError, data.DatasetNotFoundError,
          checkpoint.IncompatibleCheckpointError, train.NonFiniteLossError, ValueError)


def run(main) -> None:
  """app.run(main), printing expected errors as `error: <sentence>` with exit status 1."""
  def guarded(argv):
    try:
      main(argv)
    except Exception as e:  # pylint: disable=broad-except
      if _SHOW_TRACEBACK.value or not isinstance(e, _expected_errors()):
        raise
      print(f'error: {e}', file=sys.stderr)
      sys.exit(1)
  app.run(guarded)

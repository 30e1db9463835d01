"""The one error type for bad input, and the 'did you mean' hint its messages carry.

Every error that is the input's fault — a config, a model name or field, a dataset, a workdir, a
checkpoint, an input shape — or the run's, like a diverging loss, derives from UserError. Its
message is the whole story: experiment scripts print it as one sentence and exit with status 1.
Any other exception is a bug (in convjax, or in a model being added), and the scripts show its
type and point at --show_traceback.
"""
import difflib
from typing import Iterable


class UserError(Exception):
  """Bad input; the message says what and how to fix it."""


class InvalidValueError(UserError, ValueError):
  """An argument or field value outside what a function, model or script accepts."""


def did_you_mean(value: str, valid: Iterable[str]) -> str:
  """Returns " (did you mean 'x'?)" for the valid name closest to `value`, or '' when none is close.

  Case, '-' and '_' are ignored first, so 'ResNet-20' finds 'resnet20' and 'fashion-mnist'
  finds 'fashion_mnist'; then difflib's similarity ratio (at least 0.6) decides.
  """
  valid = list(valid)
  plain = lambda name: str(name).lower().replace('-', '').replace('_', '')
  same = [name for name in valid if plain(name) == plain(value)]
  close = same or difflib.get_close_matches(str(value), valid, n=1, cutoff=0.6)
  return f" (did you mean '{close[0]}'?)" if close else ''

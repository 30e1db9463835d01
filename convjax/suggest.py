"""'Did you mean' for a mistyped name: the closest valid one, if any is close."""
import difflib
from typing import Iterable


def did_you_mean(value: str, valid: Iterable[str]) -> str:
  """' (did you mean 'x'?)' for the valid name closest to `value`, or '' when none is close.

  Case, '-' and '_' are ignored first, so 'ResNet-20' finds 'resnet20' and 'fashion-mnist'
  finds 'fashion_mnist'; then difflib's similarity ratio (at least 0.6) decides.
  """
  valid = list(valid)
  plain = lambda name: str(name).lower().replace('-', '').replace('_', '')
  same = [name for name in valid if plain(name) == plain(value)]
  close = same or difflib.get_close_matches(str(value), valid, n=1, cutoff=0.6)
  return f" (did you mean '{close[0]}'?)" if close else ''

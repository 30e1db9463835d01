"""The one error type for bad input.

Every error that is the input's fault — a config, a model name or field, a dataset, a workdir, a
checkpoint, an input shape — or the run's, like a diverging loss, derives from UserError. Its
message is the whole story: experiment scripts print it as one sentence and exit with status 1.
Any other exception is a bug (in convjax, or in a model being added), and the scripts show its
type and point at --show_traceback.
"""


class UserError(Exception):
  """Bad input; the message says what and how to fix it."""


class InvalidValueError(UserError, ValueError):
  """An argument or field value outside what a function, model or script accepts."""

"""Stopping training early and cleanly on SIGTERM (preemption) or SIGINT (Ctrl-C).

The training loop asks `StopSignals.requested(step)` after every step; once it says yes, the
loop checkpoints that step and raises `Stopped`, and the command exits with status 128 + the
signal number, so schedulers and shell scripts see an unfinished run. A second identical signal
while the checkpoint is being written is not caught: it stops the process at once, and
the half-written checkpoint is ignored on the next run (see `checkpoint`).

In a multi-process run every process must stop at the same step, or the others wait forever
in the next collective. There JAX's preemption service does it: it catches SIGTERM in any
process and agrees on a step at which all of them stop (`parallel.preemption_sync_point`).
SIGINT is then turned into a SIGTERM to this process, so that Ctrl-C takes the same route.
"""
import os
import signal
import threading

from convjax import parallel

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(Exception):
  """A stop signal ended training early, after its step was checkpointed.

  Scripts exit with `exit_status` (experiments.cli does this for every script).
  """

  def __init__(self, received: signal.Signals, step: int):
    super().__init__(f'stopped by {received.name} at step {step}: checkpoint saved; run the same '
                     'command to continue')
    self.step, self.exit_status = step, 128 + int(received)


class StopSignals:
  """A context manager that records SIGTERM and SIGINT instead of dying at once."""

  def __init__(self):
    self.received: signal.Signals | None = None
    self._previous = {}
    self._multiprocess = parallel.process_count() > 1

  def __enter__(self) -> 'StopSignals':
    if threading.current_thread() is not threading.main_thread():
      return self  # Python only delivers signals to the main thread.
    # With several processes, JAX's preemption service owns SIGTERM.
    for signum in (signal.SIGINT,) if self._multiprocess else STOP_SIGNALS:
      self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc_info) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous = {}

  def _handle(self, signum: int, frame) -> None:
    del frame
    self.received = signal.Signals(signum)
    if self._multiprocess:
      os.kill(os.getpid(), signal.SIGTERM)  # Let the preemption service agree on a step.
    # A repeat of the same signal is the user insisting: it gets the default behaviour.
    signal.signal(signum, self._previous.pop(signum, signal.SIG_DFL))

  def requested(self, step: int) -> bool:
    """Whether training should checkpoint `step` and stop; call it after every step."""
    if self._multiprocess:
      if parallel.preemption_sync_point(step):
        self.received = self.received or signal.SIGTERM
        return True
      return False
    return self.received is not None

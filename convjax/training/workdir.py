"""The run directory's safety: usable before training starts, one owner at a time, and old
runs moved aside rather than overwritten.

A workdir holds config.json, metrics.jsonl, tensorboard/ and checkpoints/. While a run owns
it, it also holds `lock`: JSON naming the owner's pid and host, on which the owner holds an
exclusive flock. The kernel drops a flock when its process dies, however it dies, so a lock
file whose flock can be taken was left by a dead process: it is stale, and is cleared.
"""
import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import sys
import tempfile
from typing import Iterator

from convjax import errors
from convjax.training import checkpoint, metrics

LOCK_FILE = 'lock'
PREVIOUS_RUNS = 'previous_runs'
# What a training run writes; `start_over` moves exactly these aside.
RUN_FILES = (checkpoint.CHECKPOINTS, checkpoint.QUARANTINE, metrics.METRICS_FILE, 'tensorboard',
             'config.json')


class WorkdirError(errors.UserError, ValueError):
  """The workdir cannot be used: not a directory, not writable, or owned by another run."""


def check_usable(workdir: str) -> None:
  """Raises WorkdirError unless `workdir` is, or can become, a writable directory.

  Creates nothing: a refused workdir is left exactly as it was.
  """
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f'workdir {workdir} exists and is not a directory')
  existing = os.path.abspath(workdir)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise WorkdirError(f'workdir {workdir} cannot be created: {existing} is a file')
  if not _can_write_in(existing):
    raise WorkdirError(f'workdir {workdir} is not writable ({existing} refuses new files)')
  _check_not_in_use(os.path.join(workdir, LOCK_FILE))


def _check_not_in_use(path: str) -> None:
  """Raises `_in_use`'s WorkdirError if a live run holds the lock at `path`; takes nothing.

  Checked before anything reads the workdir: a live run may be writing a checkpoint there, and
  a half-written one would fail the reader with a stray error instead of this one sentence."""
  try:
    fd = os.open(path, os.O_RDONLY)
  except OSError:  # No lock file: no run.
    return
  try:
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # Refused while the owner's LOCK_EX stands.
  except OSError as e:
    if e.errno not in (errno.EAGAIN, errno.EACCES):
      raise
    raise _in_use(path) from None
  finally:
    os.close(fd)  # Closing releases the shared lock, if it was taken.


def _can_write_in(directory: str) -> bool:
  """Whether a file can be created in `directory`, tried for real and removed at once.

  os.access alone says yes to root on a read-only file system and in /proc.
  """
  if not os.access(directory, os.W_OK | os.X_OK):
    return False
  try:
    fd, path = tempfile.mkstemp(prefix='.convjax-probe-', dir=directory)
  except OSError:
    return False
  os.close(fd)
  os.remove(path)
  return True


@contextlib.contextmanager
def lock(workdir: str, enabled: bool = True) -> Iterator[None]:
  """Holds WORKDIR/lock for the duration; raises WorkdirError if a live run holds it.

  Creates the workdir. A stale lock (its process died without removing it) is reported and
  taken over. `enabled=False` (processes other than 0 of a multi-process run) does nothing.
  """
  if not enabled:
    yield
    return
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_FILE)
  fd = _acquire(path)
  try:
    yield
  finally:
    # Removed before releasing, so a waiting run finds no file rather than ours; someone may
    # have removed it by hand already.
    with contextlib.suppress(FileNotFoundError):
      os.remove(path)
    os.close(fd)


def _acquire(path: str) -> int:
  """An fd of `path` on which this process holds the exclusive flock, with its pid written."""
  while True:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      os.close(fd)
      if e.errno not in (errno.EAGAIN, errno.EACCES):
        raise
      raise _in_use(path) from None
    # The owner we waited on may have removed the file between our open and our flock; then
    # we hold a lock on a deleted file, and must try again on the new one.
    if _same_file(fd, path):
      break
    os.close(fd)
  previous = os.read(fd, 4096).decode(errors='replace').strip()
  if previous:
    print(f'warning: cleared a stale lock of {_describe(previous)}, which is no longer running',
          file=sys.stderr)
  record = {'pid': os.getpid(), 'host': socket.gethostname(),
            'started': datetime.datetime.now().isoformat(timespec='seconds')}
  os.ftruncate(fd, 0)
  os.pwrite(fd, json.dumps(record).encode(), 0)
  return fd


def _in_use(path: str) -> WorkdirError:
  return WorkdirError(f'workdir {os.path.dirname(path)} is in use by {_owner(path)}; wait for '
                      'it to finish or stop it, or use another --workdir')


def _same_file(fd: int, path: str) -> bool:
  try:
    return os.path.samestat(os.fstat(fd), os.stat(path))
  except FileNotFoundError:
    return False


def _owner(path: str) -> str:
  try:
    with open(path) as f:
      return _describe(f.read())
  except OSError:
    return 'another run'


def _describe(record: str) -> str:
  try:
    owner = json.loads(record)
    return f"process {owner['pid']} on {owner['host']} (started {owner['started']})"
  except (ValueError, KeyError, TypeError):
    return 'another run'


def start_over(workdir: str) -> str | None:
  """Moves the workdir's earlier run into WORKDIR/previous_runs/TIMESTAMP and returns that path
  (None when there was nothing to move). Nothing is deleted."""
  present = [name for name in RUN_FILES if os.path.exists(os.path.join(workdir, name))]
  if not present:
    return None
  stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S-%f')
  destination = os.path.join(workdir, PREVIOUS_RUNS, stamp)
  os.makedirs(destination)
  for name in present:
    os.replace(os.path.join(workdir, name), os.path.join(destination, name))
  return destination

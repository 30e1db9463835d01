"""Orbax checkpoints under WORKDIR/checkpoints, one directory per step, verified on restore.

Each checkpoint holds two items: `state` (the unreplicated TrainState) and `meta` (JSON: the run's
identity, run_identity.RunIdentity.checkpoint_meta, plus a SHA-256 `digest` of the state's
arrays), so a workdir can be checked against a config before anything is restored or written,
and a restored state can be checked against what was saved.

What can go wrong, and what happens:
- A crash while saving leaves only Orbax's temporary directory (NAME.orbax-checkpoint-tmp-*),
  which is never listed as a step and is removed when a run next opens the workdir.
- A checkpoint that cannot be read, or whose arrays do not match their digest, is skipped with
  a warning for the newest one before it that can; training moves the bad one to
  WORKDIR/corrupt_checkpoints/ so that its step can be saved again.
- If no checkpoint can be read, CorruptCheckpointError: a workdir with progress in it is never
  silently trained from scratch.
"""
import hashlib
import os
import sys
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp

from convjax import errors

CHECKPOINTS = 'checkpoints'
QUARANTINE = 'corrupt_checkpoints'
# Orbax's words for a restore target whose tree differs from the saved one: a config mismatch.
_TREE_MISMATCH = 'tree structures do not match'


class IncompatibleCheckpointError(errors.UserError, ValueError):
  """The workdir's checkpoint belongs to a different model or configuration."""


class CorruptCheckpointError(errors.UserError, ValueError):
  """A checkpoint, or every checkpoint of a workdir, cannot be read back as it was saved."""


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), CHECKPOINTS)


def digest(tree: Any) -> str:
  """SHA-256 over the leaves' dtypes, shapes and bytes, independent of leaf order and container
  types, so a TrainState and the plain dicts it restores to without a target agree."""
  leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(jax.device_get(tree))]
  return hashlib.sha256(''.join(sorted(_leaf_hash(a) for a in leaves)).encode()).hexdigest()


def _leaf_hash(array: np.ndarray) -> str:
  if array.ndim == 0 and array.dtype.kind in 'biu':
    # The step counter: an int32 array when saved, a Python int when restored into a fresh
    # state's 0, so only its value counts.
    return hashlib.sha256(f'int {int(array)}'.encode()).hexdigest()
  header = f'{array.dtype.str}{array.shape}'.encode()
  return hashlib.sha256(header + np.ascontiguousarray(array).tobytes()).hexdigest()


def _warn(message: str) -> None:
  print(f'warning: {message}', file=sys.stderr, flush=True)


class Checkpointer:
  """Saves and restores TrainStates (host pytrees) in a workdir."""

  def __init__(self, workdir: str, max_to_keep: int | None, create: bool = True,
               warn: Callable[[str], None] = _warn):
    """create=False opens a workdir read-only: nothing is made, moved or cleaned up."""
    self._workdir, self._writable, self._warn = workdir, create, warn
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create,
                                           cleanup_tmp_directories=create)
    self._manager = ocp.CheckpointManager(checkpoint_dir(workdir), options=options)

  def steps(self) -> list[int]:
    """Committed checkpoints' steps, oldest first (unfinished saves are not listed)."""
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    steps = self.steps()
    return steps[-1] if steps else None

  def save(self, step: int, state: Any, meta: dict) -> None:
    """Saves asynchronously; `wait` or the next save blocks until it is on disk.

    state: host arrays (the digest is taken here, from exactly what is written).
    """
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        meta=ocp.args.JsonSave({**meta, 'digest': digest(state)})))

  def read_meta(self, step: int) -> dict:
    """The meta saved with `step`; CorruptCheckpointError if it cannot be read."""
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
      meta = dict(restored.meta)
    except Exception as e:  # pylint: disable=broad-except  # Any failure to read is corruption.
      raise CorruptCheckpointError(f'the checkpoint at step {step} cannot be read: '
                                   f'{_first_line(e)}') from e
    if not all(field in meta for field in ('model', 'input_shape')):
      raise CorruptCheckpointError(f'the checkpoint at step {step} has no usable meta: {meta}')
    return meta

  def restore(self, step: int, target: Any = None) -> Any:
    """The state saved at `step`, with `target`'s tree structure and dtypes (plain dicts if None).

    Raises IncompatibleCheckpointError when the saved tree does not fit `target` (another
    optimizer or model settings), CorruptCheckpointError when it cannot be read or its arrays
    differ from the digest saved with them.
    """
    return self._restore_with_meta(step, target)[0]

  def _restore_with_meta(self, step: int, target: Any = None) -> tuple[Any, dict]:
    """`restore`, plus the meta it read to verify the state."""
    meta = self.read_meta(step)
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target)))
    except Exception as e:  # pylint: disable=broad-except
      if _TREE_MISMATCH in str(e):
        raise IncompatibleCheckpointError(
            f'the checkpoint at step {step} does not fit this config (a different optimizer or '
            f'model settings?); use another --workdir, or --start_over to move the old run '
            f'aside') from e
      raise CorruptCheckpointError(f'the checkpoint at step {step} cannot be read: '
                                   f'{_first_line(e)}') from e
    if 'digest' in meta and digest(restored.state) != meta['digest']:
      raise CorruptCheckpointError(f'the checkpoint at step {step} is corrupt: its arrays do not '
                                   'match the digest saved with them')
    return restored.state, meta

  def latest_meta(self) -> tuple[int, dict] | None:
    """(step, meta) of the newest checkpoint whose meta can be read; None if there is none."""
    return self._newest_readable(self.read_meta)

  def restore_latest(self, target: Any = None) -> tuple[int, Any, dict] | None:
    """(step, state, meta) of the newest checkpoint that restores and verifies; None if there is
    none.

    Newer unreadable checkpoints are reported, and moved to WORKDIR/corrupt_checkpoints when
    the workdir was opened writable, so that training can save those steps again.
    """
    found = self._newest_readable(lambda step: self._restore_with_meta(step, target))
    return None if found is None else (found[0], *found[1])

  def _newest_readable(self, read: Callable[[int], Any]) -> tuple[int, Any] | None:
    steps, failures = self.steps(), []
    for step in reversed(steps):
      try:
        value = read(step)
      except CorruptCheckpointError as e:
        failures.append((step, str(e)))
        continue
      for _, message in failures:
        self._warn(f'{message}; using step {step} instead')
      if self._writable and jax.process_index() == 0:  # One process moves files.
        self._quarantine([s for s in steps if s > step])
      return step, value
    if failures:
      bad = ', '.join(str(step) for step, _ in failures)
      raise CorruptCheckpointError(
          f'no checkpoint in {self._workdir} can be read (steps {bad}; the newest: '
          f'{failures[0][1]}); move {checkpoint_dir(self._workdir)} away to start from scratch')
    return None

  def _quarantine(self, steps: list[int]) -> None:
    if not steps:
      return
    self.wait()
    destination = os.path.join(os.path.abspath(self._workdir), QUARANTINE)
    os.makedirs(destination, exist_ok=True)
    for step in steps:
      target = os.path.join(destination, str(step))
      suffix = 1
      while os.path.exists(target):  # The same step may go bad twice.
        target, suffix = os.path.join(destination, f'{step}.{suffix}'), suffix + 1
      os.replace(os.path.join(checkpoint_dir(self._workdir), str(step)), target)
      self._warn(f'moved the unreadable checkpoint of step {step} to {target}')
    self._manager.reload()  # Orbax caches the step list.

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


def _first_line(error: Exception) -> str:
  text = str(error).strip()
  line = text.splitlines()[0] if text else type(error).__name__
  return line if len(line) <= 200 else line[:200] + '...'  # TensorStore's specs run on and on.


def newest_meta(workdir: str) -> tuple[int, dict] | None:
  """Returns (step, meta) of the workdir's newest checkpoint whose meta reads back, None when it
  has no checkpoint; raises CorruptCheckpointError when none is readable. Writes nothing."""
  if not os.path.isdir(checkpoint_dir(workdir)):
    return None
  checkpointer = Checkpointer(workdir, max_to_keep=None, create=False, warn=lambda _: None)
  try:
    return checkpointer.latest_meta()
  finally:
    checkpointer.close()

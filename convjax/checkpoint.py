"""Orbax checkpoints under WORKDIR/checkpoints, one directory per step.

Each checkpoint holds two items: `state` (the unreplicated TrainState) and `meta` (JSON naming
the model, classes and input shape), so a workdir can be checked against a config before
anything is restored or written.
"""
import os
from typing import Any

import orbax.checkpoint as ocp

# Config fields that must match for a checkpoint to be restored into a run.
IDENTITY_FIELDS = ('model', 'num_classes', 'input_shape')


class IncompatibleCheckpointError(ValueError):
  """The workdir's checkpoint belongs to a different model or configuration."""


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), 'checkpoints')


def latest_meta(workdir: str) -> tuple[int, dict] | None:
  """(step, meta) of the newest checkpoint in `workdir`, or None; reads without writing."""
  directory = checkpoint_dir(workdir)
  if not os.path.isdir(directory):
    return None
  with ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(create=False)) as manager:
    step = manager.latest_step()
    if step is None:
      return None
    restored = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return step, dict(restored.meta)


def check_compatible(workdir: str, meta: dict) -> None:
  """Raises IncompatibleCheckpointError when the workdir's checkpoint disagrees with `meta`."""
  found = latest_meta(workdir)
  if found is None:
    return
  step, saved = found
  for field in IDENTITY_FIELDS:
    if saved.get(field) != meta[field]:
      raise IncompatibleCheckpointError(
          f'{workdir} holds a checkpoint (step {step}) of {field}={saved.get(field)!r}, but this '
          f'run has {field}={meta[field]!r}; use another --workdir')


class Checkpointer:
  """Saves and restores TrainStates (host pytrees) in a workdir."""

  def __init__(self, workdir: str, max_to_keep: int | None, create: bool = True):
    """create=False opens a workdir read-only: nothing is made if it has no checkpoints."""
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create)
    self._manager = ocp.CheckpointManager(checkpoint_dir(workdir), options=options)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, meta: dict) -> None:
    """Saves asynchronously; `wait` or the next save blocks until it is on disk."""
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))

  def restore(self, step: int, target: Any = None) -> Any:
    """The state saved at `step`, with `target`'s tree structure and dtypes (plain dicts if None)."""
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target)))
    except ValueError as e:  # Orbax's tree-mismatch report, many lines long.
      raise IncompatibleCheckpointError(
          f'the checkpoint at step {step} does not fit this config (a different optimizer or '
          f'model settings?): {str(e).splitlines()[0]}; use another --workdir') from e
    return restored.state

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()

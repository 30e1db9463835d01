"""What a workdir's run is: the model, on what data, from which config, at which commit.

Training and weight conversion both describe their workdir with one `RunIdentity`, written by
`write` into WORKDIR/config.json (the config's fields, then the identity's) and read back by
`read`. Checkpoints carry the same identity in their meta (`checkpoint_meta`), and a resumed run
must match the checkpoint's on every field of `CHECKPOINT_FIELDS`.
"""
import dataclasses
import json
import os
import subprocess
from typing import Any

import ml_collections

from convjax.training import checkpoint, config as config_lib, metrics

CONFIG_FILE = 'config.json'
# The fields a checkpoint's identity must share with the run that resumes it; the commit and the
# source of converted weights may differ.
CHECKPOINT_FIELDS = ('model', 'num_classes', 'input_shape', 'dataset')
# Fields of config.json that are the identity's alone, not the config's.
_IDENTITY_ONLY = ('input_shape', 'commit', 'converted_from')


@dataclasses.dataclass(frozen=True)
class RunIdentity:
  """One run's identity.

  model: the registry name; num_classes: the classifier's outputs (the dataset's classes unless
  the config sets them); input_shape: the example shape the model was built for, (height,
  width, channels) for images, (samples, channels) for sound;
  dataset: the catalogue name; commit: the convjax checkout's git commit, with '-dirty' when
  tracked files had uncommitted changes ('' outside git); converted_from: the weights file a
  converted workdir came from ('' for a trained run).
  """
  model: str
  dataset: str
  num_classes: int
  input_shape: tuple[int, ...]
  commit: str = ''
  converted_from: str = ''

  @classmethod
  def of_config(cls, config, input_shape, converted_from: str = '') -> 'RunIdentity':
    """Returns the identity of a run of `config` on images of input_shape, at this checkout."""
    return cls(model=config.model, dataset=config.dataset,
               num_classes=config_lib.num_classes(config),
               input_shape=tuple(int(n) for n in input_shape), commit=checkout_commit(),
               converted_from=converted_from)

  def as_json(self) -> dict[str, Any]:
    """Returns the fields as JSON values: input_shape becomes a list; empty strings are left out."""
    fields = dataclasses.asdict(self)
    fields['input_shape'] = list(self.input_shape)
    return {k: v for k, v in fields.items() if v != ''}

  def checkpoint_meta(self, config) -> dict[str, Any]:
    """Returns the meta a checkpoint of this run holds: the identity, and the flat config under
    'config' (what a resumed run is compared with, config.check_resume)."""
    return {**self.as_json(), 'config': config_lib.flat(config)}



def check_checkpoint(workdir: str, identity: RunIdentity) -> tuple[int, dict] | None:
  """Returns (step, meta) of the workdir's newest readable checkpoint, None when it has none.

  Raises checkpoint.IncompatibleCheckpointError when that checkpoint's identity differs from
  `identity` on a CHECKPOINT_FIELDS field (meta that lacks a field is not compared on it), and
  checkpoint.CorruptCheckpointError when no checkpoint's meta reads back.
  """
  found = checkpoint.newest_meta(workdir)
  if found is None:
    return None
  step, saved = found
  ours = identity.as_json()
  for field in CHECKPOINT_FIELDS:
    if field in saved and saved[field] != ours[field]:
      raise checkpoint.IncompatibleCheckpointError(
          f'{workdir} holds a checkpoint (step {step}) of {field}={saved[field]!r}, but this '
          f'run has {field}={ours[field]!r}; use another --workdir, or --start_over to move the '
          'old run aside')
  return found


def write(directory: str, identity: RunIdentity, config) -> None:
  """Writes DIRECTORY/config.json atomically: every field of `config`, then the identity's."""
  metrics.write_json(os.path.join(directory, CONFIG_FILE), {**config.to_dict(), **identity.as_json()})


def read(workdir: str) -> tuple[RunIdentity, ml_collections.ConfigDict]:
  """Returns the identity and the config that WORKDIR/config.json holds.

  Workdirs written before the identity had a commit read back with commit ''. Raises
  FileNotFoundError when there is no config.json.
  """
  with open(os.path.join(workdir, CONFIG_FILE)) as f:
    saved = json.load(f)
  identity = RunIdentity(model=saved['model'], dataset=saved['dataset'],
                         num_classes=saved['num_classes'],
                         input_shape=tuple(saved['input_shape']),
                         commit=saved.get('commit', ''),
                         converted_from=saved.get('converted_from', ''))
  config = ml_collections.ConfigDict({k: v for k, v in saved.items() if k not in _IDENTITY_ONLY})
  return identity, config


def checkout_commit() -> str:
  """Returns the git commit of the convjax checkout this module runs from: the short hash, with
  '-dirty' when tracked files differ from it; '' where there is no git or no repository."""
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  try:
    head = subprocess.run(['git', 'rev-parse', '--short=12', 'HEAD'], cwd=root,
                          capture_output=True, text=True, timeout=10)
    if head.returncode:
      return ''
    status = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'], cwd=root,
                            capture_output=True, text=True, timeout=10)
  except (OSError, subprocess.SubprocessError):
    return ''
  return head.stdout.strip() + ('-dirty' if status.stdout.strip() else '')

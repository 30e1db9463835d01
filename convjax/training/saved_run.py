"""A workdir's model reopened: a finished (or interrupted) training run, or imported weights.

`load_model` and `load` read a workdir's config, model, latest variables and test split, and write
nothing; the visualisation, similarity, export and inference tools start here. `write_converted`
writes imported weights as a workdir that reads back the same way.
"""
import dataclasses
import functools
import os
import shutil
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from convjax import errors, models
from convjax.data import datasets
from convjax.training import (builder, checkpoint, config as config_lib, metrics, run_identity,
                              workdir as workdir_lib)


class NoCheckpointError(errors.UserError, ValueError):
  """The workdir holds no trained run to inspect."""


def _no_checkpoint(workdir: str) -> NoCheckpointError:
  return NoCheckpointError(f'{workdir} holds no checkpoint of a training run; train one first '
                           '(python -m experiments.train --workdir=...)')


@dataclasses.dataclass
class SavedModel:
  """A workdir's model without its data: config (the run's ConfigDict), module, variables
  {'params', 'batch_stats'} at `step`, and the input (height, width, channels) it was trained or
  converted for."""
  workdir: str
  config: Any
  model: Any
  variables: dict
  step: int
  identity: run_identity.RunIdentity
  info: datasets.DatasetInfo

  @property
  def input_shape(self) -> tuple[int, int, int]:
    """(height, width, channels) the model was trained or converted for."""
    return self.identity.input_shape

  @property
  def label_names(self) -> tuple[str, ...]:
    return datasets.label_names(self.config.dataset)

  def normalize(self, images) -> jnp.ndarray:
    """uint8 [n, h, w, c] -> the model's float input."""
    return datasets.normalize(jnp.asarray(images), self.info.mean, self.info.std)

  def apply(self, images, **kwargs):
    """model.apply in evaluation mode on uint8 images [n, h, w, c]."""
    return self.model.apply(self.variables, self.normalize(images), train=False, **kwargs)


@dataclasses.dataclass
class TrainedRun(SavedModel):
  """A SavedModel with its dataset's test split: uint8 images [n, h, w, c], int labels [n]."""
  test: datasets.Split

  def batched(self, fn, images: np.ndarray, batch_size: int = 500) -> list:
    """fn applied to successive slices of images; a list of host results."""
    return [jax.device_get(fn(images[i:i + batch_size])) for i in range(0, len(images), batch_size)]

  def predict(self, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities [n, classes] and penultimate features [n, d] of the test set."""
    step = jax.jit(lambda x: self.apply(x, return_features=True))
    outputs = self.batched(step, self.test.images, batch_size)
    logits = np.concatenate([o[0] for o in outputs])
    features = np.concatenate([o[1] for o in outputs])
    return np.asarray(jax.nn.softmax(logits, -1)), features


def load_model(workdir: str) -> SavedModel:
  """Returns the newest checkpoint's model and variables, without loading any data; raises
  NoCheckpointError when the workdir holds no checkpoint."""
  config_path = os.path.join(workdir, run_identity.CONFIG_FILE)
  if not (os.path.isdir(checkpoint.checkpoint_dir(workdir)) and os.path.exists(config_path)):
    raise _no_checkpoint(workdir)
  step, state = _restore_latest(workdir)
  identity, config = run_identity.read(workdir)
  model = builder.create_model(config, identity.num_classes, identity.input_shape)
  variables = _restore_variables(state, model, identity.input_shape, workdir)
  return SavedModel(workdir, config, model, variables, step, identity,
                    datasets.get_info(config.dataset))


def load(workdir: str) -> TrainedRun:
  """Reopens `workdir`'s newest checkpoint with its test split; raises NoCheckpointError when
  there is none."""
  return with_test_split(load_model(workdir))


def with_test_split(saved: SavedModel) -> TrainedRun:
  """`saved` with its dataset's test split in memory; ConfigError for a streamed dataset, whose
  splits are never held in memory (the similarity tools need one)."""
  config = saved.config
  if saved.info.streaming:
    raise config_lib.ConfigError(f"inspecting runs on streamed datasets ('{config.dataset}') is "
                                 'not supported; the tools read in-memory test splits')
  dataset = datasets.load(config.dataset, config.data_dir, config.data_source,
                          image_size=config.image_size)
  fields = {field.name: getattr(saved, field.name) for field in dataclasses.fields(saved)}
  return TrainedRun(**fields, test=dataset.test)


def _restore_latest(workdir: str) -> tuple[int, dict]:
  """Returns (step, state as plain arrays) of the newest checkpoint that reads back verified;
  unreadable newer ones are reported and skipped, never moved."""
  checkpointer = checkpoint.Checkpointer(workdir, max_to_keep=None, create=False)
  try:
    found = checkpointer.restore_latest()
    if found is None:
      raise _no_checkpoint(workdir)
    step, state, _ = found
    return step, state
  finally:
    checkpointer.close()


def _restore_variables(state: dict, model, input_shape, workdir: str) -> dict:
  """The checkpoint's params and batch_stats, checked against the model's tree."""
  abstract = jax.eval_shape(functools.partial(model.init, train=False), jax.random.PRNGKey(0),
                            jnp.zeros((1,) + input_shape))
  variables = {'params': state['params'], 'batch_stats': state.get('batch_stats') or {}}
  expected = jax.tree.structure(abstract.get('params'))
  if jax.tree.structure(variables['params']) != expected:
    raise checkpoint.IncompatibleCheckpointError(
        f"{workdir}'s checkpoint does not fit model {model.__class__.__name__}")
  return variables


CURVES = ('train_loss', 'train_accuracy', 'test_loss', 'test_accuracy')


def read_curves(workdir: str, keys=CURVES) -> dict[str, tuple[list[int], list[float]]]:
  """Each of `keys` (metrics.jsonl's fields: by default train_loss, train_accuracy, test_loss
  and test_accuracy) against step, from metrics.jsonl."""
  records = metrics.read_metrics(workdir)
  return {key: ([r['step'] for r in records if key in r], [r[key] for r in records if key in r])
          for key in keys}


def write_converted(workdir: str, config, variables: dict[str, Any], source: str) -> None:
  """Writes imported `variables` (models.torchvision_weights.load_torch) as a convjax workdir for
  `config` (its model, model_kwargs, dataset and num_classes) at the model's native input:
  config.json and a step-0 checkpoint {'step', 'params', 'batch_stats'} with its meta, which
  `load_model` reads as it reads a trained run.

  Everything goes into a sibling temporary directory that is renamed into place, so a failure
  leaves nothing behind. A workdir that already holds files is refused, never written over.
  """
  if os.path.isdir(workdir) and os.listdir(workdir):
    raise workdir_lib.WorkdirError(f'{workdir} already holds files; converting never writes over '
                                   'a run: choose a new --workdir')
  workdir_lib.check_usable(workdir)
  identity = run_identity.RunIdentity.of_config(config, models.get_spec(config.model).input_shape,
                                                converted_from=os.path.abspath(source))
  staging = os.path.abspath(workdir).rstrip(os.sep) + '.converting'
  if os.path.exists(staging):
    shutil.rmtree(staging)  # An earlier conversion that died half-way; never a finished run.
  os.makedirs(staging)
  try:
    run_identity.write(staging, identity, config)
    checkpointer = checkpoint.Checkpointer(staging, max_to_keep=None)
    try:
      # The identity alone: a converted workdir has no training config for a resumed run to match.
      checkpointer.save(0, {'step': np.int32(0), **variables}, identity.as_json())
      checkpointer.wait()
    finally:
      checkpointer.close()
    if os.path.isdir(workdir):
      os.rmdir(workdir)  # Empty, as checked above.
    os.rename(staging, workdir)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise

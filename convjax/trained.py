"""A finished (or interrupted) training run reopened for inspection: its config, model, latest
variables and test split. The visualisation and similarity tools start here.

Nothing is written: a workdir is only read.
"""
import dataclasses
import functools
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from convjax import builder, checkpoint, config as config_lib, data, errors, metrics


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
  input_shape: tuple[int, int, int]
  info: data.DatasetInfo

  @property
  def label_names(self) -> tuple[str, ...]:
    return data.label_names(self.config.dataset)

  def normalize(self, images) -> jnp.ndarray:
    """uint8 [n, h, w, c] -> the model's float input."""
    return data.normalize(jnp.asarray(images), self.info.mean, self.info.std)

  def apply(self, images, **kwargs):
    """model.apply in evaluation mode on uint8 images [n, h, w, c]."""
    return self.model.apply(self.variables, self.normalize(images), train=False, **kwargs)


@dataclasses.dataclass
class TrainedRun(SavedModel):
  """A SavedModel with its dataset's test split: uint8 images [n, h, w, c], int labels [n]."""
  test: data.Split

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
  """The newest checkpoint's model and variables, without loading any data; raises
  NoCheckpointError when the workdir holds no checkpoint."""
  config_path = os.path.join(workdir, 'config.json')
  if not (os.path.isdir(checkpoint.checkpoint_dir(workdir)) and os.path.exists(config_path)):
    raise _no_checkpoint(workdir)
  step, meta, state = _restore_latest(workdir)
  with open(config_path) as f:
    saved = json.load(f)
  config = ml_collections.ConfigDict({k: v for k, v in saved.items()
                                      if k not in ('input_shape',)})
  input_shape = tuple(meta['input_shape'])
  model = builder.create_model(config, meta['num_classes'], input_shape)
  variables = _restore_variables(state, model, input_shape, workdir)
  return SavedModel(workdir, config, model, variables, step, input_shape,
                    data.get_info(config.dataset))


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
  dataset = data.load(config.dataset, config.data_dir, config.data_source,
                      image_size=config.image_size)
  fields = {field.name: getattr(saved, field.name) for field in dataclasses.fields(saved)}
  return TrainedRun(**fields, test=dataset.test)


def _restore_latest(workdir: str) -> tuple[int, dict, dict]:
  """(step, meta, state as plain arrays) of the newest checkpoint that reads back verified;
  unreadable newer ones are reported and skipped, never moved."""
  checkpointer = checkpoint.Checkpointer(workdir, max_to_keep=None, create=False)
  try:
    found = checkpointer.restore_latest()
    if found is None:
      raise _no_checkpoint(workdir)
    step, state, meta = found
    return step, meta, state
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


def read_curves(workdir: str) -> dict[str, tuple[list[int], list[float]]]:
  """train_loss, train_accuracy, test_loss and test_accuracy against step, from metrics.jsonl."""
  records = metrics.read_metrics(workdir)
  keys = ('train_loss', 'train_accuracy', 'test_loss', 'test_accuracy')
  return {key: ([r['step'] for r in records if key in r], [r[key] for r in records if key in r])
          for key in keys}

"""Fine-tuning's starting point: a run's variables taken from trained weights, not drawn at random.

config.init_from names the source, read once before the run's first step:
  a convjax workdir   its newest checkpoint (a trained run, or one experiments.convert wrote),
                      which must be of the same registry model;
  a weights file      torchvision's state dict of the model's counterpart (torchvision_weights.load_torch).

Every variable of the run comes from the source, with matching shapes, except:
  the head            models.ModelSpec.head, the layers whose outputs are the classes. With
                      config.reinit_head None it keeps its random initialisation when its shapes
                      differ from the source's (another number of classes) or the source is a
                      workdir of another dataset (other classes); True always, False never. A
                      source's head tensors that the run lacks (GoogLeNet's auxiliary
                      classifiers, when the run trains without them) are dropped.
  the first conv      of an RGB source on grayscale data: its kernel [h, w, 3, out] is summed over
                      the colour channels to [h, w, 1, out], which responds to a grey image as the
                      RGB kernel responds to the same image with r = g = b (timm's rule).
Anything else missing, left over or misshapen is an error naming the first offending variable.
How the head then trains (a frozen backbone, a smaller backbone rate) is config.freeze and
config.backbone_lr_scale, in optim.partition_optimizer and steps.train_step.
"""
import os
from typing import Any

import jax
import numpy as np
from flax import traverse_util

from convjax import errors, models
from convjax.models import torchvision_weights
from convjax.training import builder, saved_run

Path = tuple[str, ...]  # (collection, module, ..., leaf)


class InitFromError(errors.UserError, ValueError):
  """config.init_from names weights that cannot start this run; the message says why."""


def initial_variables(config, fresh: dict) -> tuple[dict, str]:
  """The run's starting variables from config.init_from, and a line saying what was taken.

  A detector (a detection dataset) takes init_from into its backbone, config.model's own
  variables, and keeps `fresh`'s pyramid and heads: a classifier's workdir or torchvision's
  ImageNet weights start it, as CenterNet and FCOS start from ImageNet.

  Args:
    config: the run's config, with init_from set.
    fresh: the run's own random initialisation {'params', 'batch_stats'} (Run.init_variables),
      which fixes every shape and supplies a re-initialised head.
  Returns:
    ({'params', 'batch_stats'} of float32 host arrays shaped as `fresh`, description).
  Raises:
    InitFromError, torchvision_weights.WeightsError or a checkpoint error, naming what does not fit.
  """
  if not builder.is_detection(config):
    return _model_variables(config, fresh)
  backbone = {collection: tree['backbone'] for collection, tree in fresh.items()
              if 'backbone' in tree}
  taken, description = _model_variables(config, backbone)
  variables = jax.tree.map(lambda v: np.asarray(v, np.float32), fresh)
  for collection, tree in taken.items():
    variables[collection]['backbone'] = tree
  return variables, f'{description} (the backbone)'


def _model_variables(config, fresh: dict) -> tuple[dict, str]:
  """`initial_variables` for config.model's own variables `fresh`."""
  source, source_dataset = _read_source(config)
  head = models.get_spec(config.model).head
  target = traverse_util.flatten_dict(fresh)
  in_head = lambda path: path[0] == 'params' and _is_head(path, head)
  differs = sorted('/'.join(p) for p, v in target.items()
                   if in_head(p) and (p not in source or source[p].shape != v.shape))
  # Another dataset's classes mean other things, even when there are as many.
  other_classes = bool(differs) or source_dataset not in (None, config.dataset)
  reinit = other_classes if config.reinit_head is None else config.reinit_head
  if differs and not reinit:
    raise InitFromError(f"{config.init_from}'s head does not fit this run's ({differs[0]} "
                        'differs: another number of classes?); leave reinit_head unset to '
                        're-initialise it')
  taken = {}
  for path, value in target.items():
    if reinit and in_head(path):
      taken[path] = np.asarray(value, np.float32)
    elif path not in source:
      raise InitFromError(f"{config.init_from} has no {'/'.join(path)}, which this run's "
                          f"{config.model} needs")
    else:
      taken[path] = _fit(config, source[path], value.shape, path)
  extra = sorted('/'.join(p) for p in source if p not in target and not _is_head(p, head))
  if extra:
    raise InitFromError(f"{config.init_from} holds {len(extra)} variable(s) that this run's "
                        f'{config.model} lacks, the first being {extra[0]}: are its model_kwargs '
                        'the same?')
  count = sum(v.size for p, v in taken.items() if p[0] == 'params' and not (reinit and in_head(p)))
  head_note = ', head re-initialised' if reinit else ''
  return (traverse_util.unflatten_dict(taken),
          f'{count:,} parameters from {config.init_from}{head_note}')


def _is_head(path: Path, head: tuple[str, ...]) -> bool:
  return models.in_head(head, path[1])


def _read_source(config) -> tuple[dict[Path, np.ndarray], str | None]:
  """config.init_from's variables as {(collection, module, ..., leaf): array}, and the dataset
  they were trained on where a workdir says so (None for a weights file)."""
  source, dataset = config.init_from, None
  if os.path.isdir(source):
    saved = saved_run.load_model(source)
    if saved.config.model != config.model:
      raise InitFromError(f"init_from={source} holds a {saved.config.model}, but this run "
                          f"trains {config.model}")
    variables, dataset = saved.variables, saved.config.dataset
  elif os.path.exists(source):
    variables = _read_weights_file(config, source)
  else:
    raise InitFromError(f"init_from={source}: there is no workdir or weights file there")
  flat = traverse_util.flatten_dict({k: v for k, v in variables.items() if v})
  return {path: np.asarray(value, np.float32) for path, value in flat.items()}, dataset


def _read_weights_file(config, path: str) -> dict[str, Any]:
  """A torchvision state dict of config.model's counterpart, at the file's own number of
  classes, as convjax variables."""
  state = torchvision_weights.read_state_dict(path)
  num_classes = torchvision_weights.torch_num_classes(config.model, state)
  return torchvision_weights.load_torch(config.model, state, num_classes,
                                        **builder.model_overrides(config))


def _fit(config, array: np.ndarray, shape: tuple[int, ...], path: Path) -> np.ndarray:
  """The source's array for the run's variable of `shape` at `path`: itself, or an RGB first
  conv summed for grayscale input; InitFromError for any other mismatch."""
  if array.shape == tuple(shape):
    return array
  if array.ndim == 4 and shape[2] == 1 and array.shape[:2] + array.shape[3:] == (
      shape[:2] + shape[3:]):
    return array.sum(axis=2, keepdims=True)
  hint = ''
  if models.get_spec(config.model).small_inputs and config.small_inputs is not False:
    why = ('small_inputs=True selects' if config.small_inputs else
           f'images below {models.SMALL_INPUT_SIZE}x{models.SMALL_INPUT_SIZE} get')
    hint = f' ({why} the small-image variant; --config.small_inputs=False keeps the native one)'
  raise InitFromError(
      f"{config.init_from}'s {'/'.join(path)} has shape {torchvision_weights.shape_text(array.shape)}, but "
      f"this run's {config.model} needs {torchvision_weights.shape_text(shape)}{hint}")


def describe(config) -> str:
  """What config.freeze and config.backbone_lr_scale train, for the run's opening lines."""
  if config.freeze == 'backbone':
    return 'training the head alone on a frozen backbone (evaluation mode)'
  if config.backbone_lr_scale != 1:
    return f'the backbone learns at {config.backbone_lr_scale:g} x the learning rate'
  return ''

"""Checks an experiment config before any work, and derives the values it leaves implicit."""
import json
import math

from convjax import errors, models
from convjax.data import datasets, randaugment, sampling
from convjax.nn import conv_backend
from convjax.training import baseline, optimizer


class ConfigError(errors.UserError, ValueError):
  """A config that cannot run; the message says which field and why."""


class ResumeError(errors.UserError, ValueError):
  """A workdir's checkpoint was trained under settings that this run would change."""


# Fields a resumed run may change: how long it trains, how often it logs, evaluates and saves,
# how big its evaluation batches are and whether they add mirrored images, where it reads data
# from, on how many devices, and which library computes its convolutions (the same numbers up to
# float rounding). Every other field shapes the parameters' trajectory, so a checkpoint continues
# only under the values that produced it.
RESUMABLE_FIELDS = (
    'num_epochs', 'num_train_steps', 'train_budget_seconds', 'log_every_steps',
    'eval_every_steps', 'checkpoint_every_steps', 'max_checkpoints_to_keep', 'eval_batch_size',
    'skip_nonfinite_steps', 'num_devices', 'distributed', 'data_dir', 'data_source', 'download',
    'manual_dir', 'input_workers', 'prefetch_batches', 'conv_backend', 'tta_flip',
    'tta_translate')


def validate(config, num_devices: int) -> None:
  """Raises ConfigError for the first problem found; touches no files and loads no data.

  Args:
    config: the experiment ConfigDict.
    num_devices: devices over all processes, which must divide the batch sizes.
  """
  _check_choice('model', config.model, models.list_models())
  _check_choice('dataset', config.dataset, datasets.list_datasets())
  _check_choice('optimizer', config.optimizer, optimizer.OPTIMIZERS)
  _check_choice('lr_schedule', config.lr_schedule, optimizer.SCHEDULES)
  _check_choice('data_source', config.data_source, datasets.DATA_SOURCES)
  _check_choice('conv_backend', config.conv_backend, conv_backend.CONV_BACKENDS)
  for field in ('batch_size', 'eval_batch_size', 'learning_rate'):
    if not config[field] > 0:
      raise ConfigError(f'{field} must be positive, got {config[field]}')
  if config.num_train_steps <= 0 and not config.num_epochs > 0:
    raise ConfigError(f'num_epochs must be positive when num_train_steps <= 0, got {config.num_epochs}')
  if config.skip_nonfinite_steps < 0:
    raise ConfigError(f'skip_nonfinite_steps must be >= 0, got {config.skip_nonfinite_steps}')
  if config.batch_size % num_devices:  # eval_batch_size is rounded instead (eval_batch_size()).
    raise ConfigError(f'batch_size={config.batch_size} is not divisible by the {num_devices} '
                      f'devices; use a multiple of {num_devices}')
  if config.aux_loss_weight > 0 and not models.has_field(config.model, 'aux_logits'):
    raise ConfigError(f'aux_loss_weight={config.aux_loss_weight} needs a model with auxiliary '
                      f"classifiers, and '{config.model}' has none")
  _check_model_kwargs(config)
  _check_modality(config)
  _check_augmentation(config)
  _check_recipe(config, num_devices)
  _check_finetune(config)
  dataset_classes = datasets.NUM_CLASSES[config.dataset]
  if config.num_classes is not None and config.num_classes != dataset_classes:
    raise ConfigError(f'num_classes={config.num_classes} does not match dataset '
                      f"'{config.dataset}', which has {dataset_classes} classes")


def _check_model_kwargs(config) -> None:
  valid = models.fields(config.model)
  for key in model_kwargs(config):
    if key not in valid:
      listing = (f"its fields are: {', '.join(valid)}" if valid else
                 'it has no field that a config can set')
      raise ConfigError(f"model_kwargs.{key}: '{config.model}' has no field '{key}'"
                        f'{errors.did_you_mean(key, valid)}; {listing}')


def model_kwargs(config) -> dict:
  """config.model_kwargs as a plain dict ({} for configs saved before the field existed)."""
  kwargs = config.get('model_kwargs')
  return kwargs.to_dict() if kwargs is not None else {}


def _check_augmentation(config) -> None:
  info, augment = datasets.CATALOGUE[config.dataset], config.augment
  for field in ('crop_padding', 'cutout'):
    if augment[field] < 0:
      raise ConfigError(f'augment.{field} must be >= 0, got {augment[field]}')
    if augment[field] and info.streaming:
      raise ConfigError(f"augment.{field} applies to in-memory datasets; '{config.dataset}' is "
                        'streamed with random-resized crops (see augment.min_crop_scale)')
  if augment.flip and not info.flip:
    raise ConfigError(f"augment.flip would change classes of '{config.dataset}' "
                      f'({_why_no_mirror(info)})')
  _check_erasing(config)
  ops, magnitude = augment.randaugment_ops, augment.randaugment_magnitude
  if not (isinstance(ops, int) and ops >= 0):
    raise ConfigError(f'augment.randaugment_ops must be a whole number >= 0, got {ops}')
  if not 0 <= magnitude <= randaugment.MAX_MAGNITUDE:
    raise ConfigError(f'augment.randaugment_magnitude must be in [0, '
                      f'{randaugment.MAX_MAGNITUDE:g}], got {magnitude}')
  for field, value in (('augment.min_crop_scale', augment.min_crop_scale),
                       ('eval_crop_ratio', config.eval_crop_ratio)):
    if not 0 < value <= 1:
      raise ConfigError(f'{field} must be in (0, 1], got {value}')
  if config.input_workers < 1:
    raise ConfigError(f'input_workers must be at least 1, got {config.input_workers}')


def _check_tta_translate(config, info) -> None:
  shift = config.get('tta_translate', 0)
  if not (isinstance(shift, int) and shift >= 0):
    raise ConfigError(f'tta_translate must be a whole number of pixels >= 0, got {shift}')
  if shift and info.modality != 'image':
    raise ConfigError(f"tta_translate shifts images; '{config.dataset}' holds "
                      f'{info.modality} examples')
  # The images the model sees: resized to image_size where set (streamed ones have no fixed size).
  size = (config.image_size,) * 2 if config.image_size else (info.image_shape or (None,))[:2]
  if shift and None not in size and shift >= min(size):
    raise ConfigError(f'tta_translate={shift} would shift every pixel out of the '
                      f'{size[0]}x{size[1]} images')


def _why_no_mirror(info) -> str:
  if info.modality == 'audio':
    return 'a waveform played backwards is not the same word'
  return 'mirrored digits and characters are different symbols'


# Augmentations and settings that only make sense for images, by config field.
_IMAGE_ONLY = ('augment.cutout', 'augment.random_erasing', 'augment.randaugment_ops',
               'cutmix_alpha', 'image_size')


def _check_modality(config) -> None:
  """The model takes the dataset's kind of example; the split exists; no image-only setting is
  asked of sound or video."""
  info, spec = datasets.CATALOGUE[config.dataset], models.get_spec(config.model)
  try:
    datasets.check_split(info, config.get('data_split', 'default'))
  except errors.InvalidValueError as e:
    raise ConfigError(f'data_split: {e}') from None
  if spec.modality != _model_modality(info):
    raise ConfigError(f"model '{config.model}' reads {spec.modality} but dataset "
                      f"'{config.dataset}' holds {info.modality}; models for it: "
                      f"{', '.join(_models_for(info))}")
  _check_detection_settings(config, info)
  try:
    baseline.check(config.get('baseline', ''), config.dataset)
  except errors.InvalidValueError as e:
    raise ConfigError(f'baseline: {e}') from None
  if info.modality == 'image':
    return
  # Streamed photographs are letterboxed to image_size; in-memory scenes keep their boxes' size.
  sized = ('image_size',) if info.modality == 'detection' and info.streaming else ()
  for field in _IMAGE_ONLY:
    value = config.augment[field.split('.')[1]] if '.' in field else config[field]
    if value and field not in sized:
      raise ConfigError(f"{field} applies to images; '{config.dataset}' holds {info.modality}")


def _model_modality(info) -> str:
  """What a model for this dataset reads: a detector's backbone reads images."""
  return 'image' if info.modality == 'detection' else info.modality


def _models_for(info) -> list[str]:
  return [name for name in models.list_models()
          if models.get_spec(name).modality == _model_modality(info)]


# Settings the detection step does not take, by config field and the value that means off.
# The augmentations among them would move pixels without their boxes.
_CLASSIFICATION_ONLY = (('augment.crop_padding', 0), ('augment.cutout', 0),
                        ('augment.random_erasing', 0.0), ('augment.randaugment_ops', 0),
                        ('mixup_alpha', 0.0), ('label_smoothing', 0.0),
                        ('grad_accum_steps', 1), ('aux_loss_weight', 0.0),
                        ('freeze', 'none'))


def _check_detection_settings(config, info) -> None:
  """A detection dataset gets no classification-only setting; scene_scale needs one."""
  value = lambda field: (config.augment[field.split('.')[1]] if '.' in field
                         else config.get(field))
  if info.modality != 'detection':
    if tuple(config.augment.scene_scale) != (1.0, 1.0):
      raise ConfigError(f"augment.scene_scale moves boxes; '{config.dataset}' has none")
    return
  for field, off in _CLASSIFICATION_ONLY:
    if value(field) not in (off, None):
      raise ConfigError(f"{field} applies to classification; '{config.dataset}' is a detection "
                        'dataset')
  low, high = config.augment.scene_scale
  if not 0 < low <= high:
    raise ConfigError(f'augment.scene_scale must be (low, high) with 0 < low <= high, got '
                      f'{tuple(config.augment.scene_scale)}')


def _check_erasing(config) -> None:
  augment = config.augment
  _check_probability('augment.random_erasing', augment.random_erasing)
  if augment.random_erasing and datasets.CATALOGUE[config.dataset].streaming:
    raise ConfigError(f"augment.random_erasing applies to in-memory datasets; '{config.dataset}' "
                      'is streamed')
  for field, limit in (('erasing_scale', 1.0), ('erasing_ratio', math.inf)):
    value = tuple(augment[field])
    if not (len(value) == 2 and 0 < value[0] <= value[1] <= limit):
      bound = f' <= {limit:g}' if math.isfinite(limit) else ''
      raise ConfigError(f'augment.{field} must be (low, high) with 0 < low <= high{bound}, '
                        f'got {value}')


def _check_recipe(config, num_devices: int) -> None:
  if not 0 <= config.label_smoothing < 1:
    raise ConfigError(f'label_smoothing must be in [0, 1), got {config.label_smoothing}')
  accum = config.grad_accum_steps
  if not (isinstance(accum, int) and accum >= 1):
    raise ConfigError(f'grad_accum_steps must be a whole number >= 1, got {accum}')
  if config.batch_size % (num_devices * accum):
    raise ConfigError(f'batch_size={config.batch_size} does not split into grad_accum_steps='
                      f'{accum} micro-batches on each of the {num_devices} devices; use a '
                      f'multiple of {num_devices * accum}')
  info = datasets.CATALOGUE[config.dataset]
  if config.tta_flip and not info.flip:
    raise ConfigError(f"tta_flip would average '{config.dataset}' examples with mirrors of "
                      f'another class ({_why_no_mirror(info)})')
  _check_tta_translate(config, info)
  for field in ('mixup_alpha', 'cutmix_alpha'):
    if not config[field] >= 0:
      raise ConfigError(f'{field} must be >= 0 (0 turns it off), got {config[field]}')
  for field in ('mix_prob', 'mix_switch_prob'):
    _check_probability(field, config[field])
  if not 0 <= config.ema_decay < 1:
    raise ConfigError(f'ema_decay must be in [0, 1) (0 turns it off), got {config.ema_decay}')
  if not 0 <= config.drop_path_rate < 1:
    raise ConfigError(f'drop_path_rate must be in [0, 1), got {config.drop_path_rate}')
  if config.drop_path_rate and not models.has_field(config.model, 'drop_path_rate'):
    raise ConfigError(f'drop_path_rate={config.drop_path_rate} needs a model with residual or '
                      f"dense blocks (ResNets, DenseNet), and '{config.model}' has none")
  if config.drop_path_rate and 'drop_path_rate' in config.model_kwargs:
    raise ConfigError(f'drop_path_rate is set twice, as drop_path_rate={config.drop_path_rate} and '
                      f'model_kwargs.drop_path_rate={config.model_kwargs.drop_path_rate}; set '
                      'only drop_path_rate')
  if config.lr_schedule == 'onecycle':
    if config.warmup_epochs:
      raise ConfigError('lr_schedule=onecycle rises over onecycle_pct_start itself; set '
                        f'warmup_epochs=0 (got {config.warmup_epochs})')
    if not 0 < config.onecycle_pct_start < 1:
      raise ConfigError(f'onecycle_pct_start must be in (0, 1), got {config.onecycle_pct_start}')
    if not config.onecycle_div_factor >= 1:
      raise ConfigError(f'onecycle_div_factor must be >= 1, got {config.onecycle_div_factor}')


def _check_finetune(config) -> None:
  _check_choice('freeze', config.freeze, optimizer.FREEZE)
  if not config.backbone_lr_scale >= 0:
    raise ConfigError(f'backbone_lr_scale must be >= 0, got {config.backbone_lr_scale}')
  if config.reinit_head is not None and not config.init_from:
    raise ConfigError(f'reinit_head={config.reinit_head} applies to weights loaded with '
                      'init_from, which is not set')
  if config.freeze != 'backbone':
    return
  frozen = 'freeze=backbone runs the backbone in evaluation mode'
  if config.backbone_lr_scale != 1:
    raise ConfigError(f'backbone_lr_scale={config.backbone_lr_scale} has no effect on a frozen '
                      'backbone (freeze=backbone); leave it at 1')
  if not models.get_spec(config.model).head:
    raise ConfigError(f"'{config.model}' scores classes with fixed parameters, so freeze=backbone "
                      'would leave nothing to train')
  if config.aux_loss_weight > 0:
    raise ConfigError(f'{frozen}, where auxiliary classifiers do not run; set aux_loss_weight=0')
  if config.drop_path_rate > 0:
    raise ConfigError(f'{frozen}, where stochastic depth does not apply; set drop_path_rate=0')


def _check_probability(field: str, value: float) -> None:
  if not 0 <= value <= 1:
    raise ConfigError(f'{field} is a probability, in [0, 1], got {value}')


def _check_choice(field: str, value: str, valid) -> None:
  if value not in valid:
    raise ConfigError(f"unknown {field} '{value}'{errors.did_you_mean(value, valid)}; valid "
                      f"values are: {', '.join(valid)}")


def num_classes(config) -> int:
  """The config's num_classes, or the dataset's when unset."""
  return config.num_classes or datasets.NUM_CLASSES[config.dataset]


def eval_batch_size(config, num_devices: int) -> int:
  """config.eval_batch_size rounded up to a multiple of the devices. Evaluation pads its last
  batch and masks the padding, so its results do not depend on the batch; the training batch
  shapes the run and stays strict (validate)."""
  return -(-config.eval_batch_size // num_devices) * num_devices


def total_steps(config, num_train_examples: int) -> int:
  """num_train_steps when positive, else num_epochs (may be fractional) of full batches."""
  if config.num_train_steps > 0:
    return config.num_train_steps
  steps = sampling.steps_per_epoch(num_train_examples, config.batch_size)
  if steps == 0:
    raise ConfigError(f'batch_size={config.batch_size} is larger than the '
                      f'{num_train_examples} training examples')
  return max(1, math.ceil(config.num_epochs * steps))


def every_steps(value: int, steps_per_epoch: int) -> int:
  """An interval field: itself when positive, else one epoch."""
  return value if value > 0 else steps_per_epoch


def flat(config) -> dict:
  """Every field as 'group.field' -> its JSON value (tuples become lists; model_kwargs stays
  one dict), with num_classes resolved, so a config and the copy saved with a checkpoint compare
  equal when they train alike."""
  def walk(tree, prefix=''):
    for key, value in tree.items():
      # model_kwargs is compared whole: a key only one side has still changes the model.
      if isinstance(value, dict) and f'{prefix}{key}' != 'model_kwargs':
        yield from walk(value, f'{prefix}{key}.')
      else:
        yield f'{prefix}{key}', value
  values = dict(walk(config.to_dict()))
  values['num_classes'] = num_classes(config)
  return json.loads(json.dumps(values))


def check_resume(saved: dict, current: dict, step: int, workdir: str) -> dict:
  """Compares the flat config saved with a checkpoint (`flat`) against this run's.

  Raises ResumeError naming every changed field outside RESUMABLE_FIELDS with its old and new
  value. Returns the changed resumable fields, {field: [old, new]}, for the run's record. Fields
  that only one side knows (added by a newer convjax) are not compared.
  """
  changed = {field: [saved[field], value] for field, value in current.items()
             if field in saved and saved[field] != value}
  refused = {f: v for f, v in changed.items() if f not in RESUMABLE_FIELDS}
  if refused:
    raise ResumeError(
        f'{workdir} holds a checkpoint (step {step}) trained with other settings '
        f'({describe_changes(refused)}), and these cannot change when a run resumes; use '
        '--start_over to move the old run aside, or another --workdir')
  return {f: v for f, v in changed.items() if f in RESUMABLE_FIELDS}


def describe_changes(changes: dict) -> str:
  """{field: [old, new]} as "field old -> new; ..."."""
  return '; '.join(f'{field} {old!r} -> {new!r}' for field, (old, new) in changes.items())

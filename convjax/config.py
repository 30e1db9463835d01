"""Checks an experiment config before any work, and derives the values it leaves implicit."""
import math

from convjax import data, models, optim, sampling


class ConfigError(ValueError):
  """A config that cannot run; the message says which field and why."""


def validate(config, num_devices: int) -> None:
  """Raises ConfigError for the first problem found; touches no files and loads no data.

  Args:
    config: the experiment ConfigDict.
    num_devices: devices over all processes, which must divide the batch sizes.
  """
  _check_choice('model', config.model, models.list_models())
  _check_choice('dataset', config.dataset, data.list_datasets())
  _check_choice('optimizer', config.optimizer, optim.OPTIMIZERS)
  _check_choice('lr_schedule', config.lr_schedule, optim.SCHEDULES)
  _check_choice('data_source', config.data_source, data.DATA_SOURCES)
  for field in ('batch_size', 'eval_batch_size', 'learning_rate'):
    if not config[field] > 0:
      raise ConfigError(f'{field} must be positive, got {config[field]}')
  if config.num_train_steps <= 0 and not config.num_epochs > 0:
    raise ConfigError(f'num_epochs must be positive when num_train_steps <= 0, got {config.num_epochs}')
  if config.skip_nonfinite_steps < 0:
    raise ConfigError(f'skip_nonfinite_steps must be >= 0, got {config.skip_nonfinite_steps}')
  for field in ('batch_size', 'eval_batch_size'):
    if config[field] % num_devices:
      raise ConfigError(f'{field}={config[field]} is not divisible by the {num_devices} devices; '
                        f'use a multiple of {num_devices}')
  if config.aux_loss_weight > 0 and not models.has_field(config.model, 'aux_logits'):
    raise ConfigError(f'aux_loss_weight={config.aux_loss_weight} needs a model with auxiliary '
                      f"classifiers, and '{config.model}' has none")
  _check_augmentation(config)
  dataset_classes = data.NUM_CLASSES[config.dataset]
  if config.num_classes is not None and config.num_classes != dataset_classes:
    raise ConfigError(f'num_classes={config.num_classes} does not match dataset '
                      f"'{config.dataset}', which has {dataset_classes} classes")


def _check_augmentation(config) -> None:
  info, augment = data.CATALOGUE[config.dataset], config.augment
  for field in ('crop_padding', 'cutout'):
    if augment[field] < 0:
      raise ConfigError(f'augment.{field} must be >= 0, got {augment[field]}')
    if augment[field] and info.streaming:
      raise ConfigError(f"augment.{field} applies to in-memory datasets; '{config.dataset}' is "
                        'streamed with random-resized crops (see augment.min_crop_scale)')
  if augment.flip and not info.flip:
    raise ConfigError(f"augment.flip would change classes of '{config.dataset}' (mirrored "
                      'digits and characters are different symbols)')
  for field, value in (('augment.min_crop_scale', augment.min_crop_scale),
                       ('eval_crop_ratio', config.eval_crop_ratio)):
    if not 0 < value <= 1:
      raise ConfigError(f'{field} must be in (0, 1], got {value}')
  if config.input_workers < 1:
    raise ConfigError(f'input_workers must be at least 1, got {config.input_workers}')


def _check_choice(field: str, value: str, valid) -> None:
  if value not in valid:
    raise ConfigError(f"unknown {field} '{value}'; valid values are: {', '.join(valid)}")


def num_classes(config) -> int:
  """The config's num_classes, or the dataset's when unset."""
  return config.num_classes or data.NUM_CLASSES[config.dataset]


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

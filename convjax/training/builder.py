"""The one place a run is assembled from its config: the model, the input normaliser, the
learning-rate schedule and optimiser, the initial state, and the data-parallel steps.

Training, comparison, inspection and the benchmarks all come through `build` (or, for the model
alone, `create_model`), so what a benchmark times is the step that training runs.

  run = builder.build(config, dp, builder.DataSpec.of_pipeline(pipeline, num_classes))
  state = dp.replicate(run.init_state())
  state, step_metrics = run.p_train_step(state, batch)
"""
import dataclasses
import functools
from typing import Any, Callable

import jax.numpy as jnp
import optax

from convjax import models, parallel
from convjax.models import detection as detection_model, features, input_shapes
from convjax.data import datasets, mixing, sampling
from convjax.training import config as config_lib, detection, optimizer, steps


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """What assembling a run needs to know of its data.

  image_shape: the model's input example, (height, width, channels) for images, (samples,
    channels) for sound.
  mean, std: per-channel statistics of the stored integers (uint8 pixels, int16 samples, scaled
    to [0, 1] or [-1, 1]) that normalise the input.
  num_train_examples: the training split's size, which sets the epochs of the schedule.
  """
  image_shape: tuple[int, ...]
  num_classes: int
  mean: Any
  std: Any
  num_train_examples: int

  @classmethod
  def of_pipeline(cls, pipeline, num_classes: int) -> 'DataSpec':
    """The spec of a `pipeline.Pipeline`'s data."""
    return cls(tuple(pipeline.image_shape), num_classes, pipeline.info.mean, pipeline.info.std,
               pipeline.num_train_examples)

  @classmethod
  def synthetic(cls, image_shape, num_classes: int, num_train_examples: int) -> 'DataSpec':
    """Random images: fixed statistics, as the values do not matter for speed, only the work."""
    channels = image_shape[-1]
    return cls(tuple(image_shape), num_classes, (0.5,) * channels, (0.25,) * channels,
               num_train_examples)


@dataclasses.dataclass(frozen=True)
class Run:
  """A config's model and steps for one data spec on one set of devices.

  The pmapped steps are built on first use; `p_train_step` may donate its state argument
  (parallel.DONATE_MIN_BYTES), so callers keep only the state it returns.
  """
  config: Any
  dp: parallel.DataParallel
  data: DataSpec
  model: Any
  schedule: optax.Schedule
  tx: optax.GradientTransformation
  steps_per_epoch: int
  total_steps: int

  @property
  def normalize(self) -> Callable:
    """uint8 images [..., h, w, c] -> the model's input in its dtype."""
    return functools.partial(datasets.normalize, mean=self.data.mean, std=self.data.std,
                             dtype=self.model.dtype)

  @property
  def recipe(self) -> steps.Recipe:
    """The config's fields that shape the steps (steps.Recipe)."""
    config = self.config
    return steps.Recipe(aux_loss_weight=config.aux_loss_weight,
                        skip_nonfinite=config.skip_nonfinite_steps > 0,
                        label_smoothing=config.label_smoothing,
                        grad_accum_steps=config.grad_accum_steps, tta_flip=config.tta_flip,
                        tta_translate=config.get('tta_translate', 0),
                        mixing=mixing.Mixing(config.mixup_alpha, config.cutmix_alpha,
                                             config.mix_prob, config.mix_switch_prob),
                        ema_decay=config.ema_decay,
                        frozen_backbone=config.get('freeze', 'none') == 'backbone',
                        head=models.get_spec(config.model).head)

  def init_variables(self) -> dict:
    """The model's random initialisation from config.seed, {'params', 'batch_stats'}."""
    return steps.init_variables(self.model, self.data.image_shape, self.config.seed)

  def init_state(self, variables: dict | None = None) -> steps.TrainState:
    """A fresh state on the host: from `variables` where given (fine-tuning's starting point,
    finetune.initial_variables), else from config.seed's random initialisation."""
    return steps.create_train_state(self.model, self.tx, self.data.image_shape, self.config.seed,
                                    ema=self.config.ema_decay > 0, variables=variables)

  @property
  def detection(self) -> bool:
    """Whether the run finds objects (a detection dataset) rather than classifying."""
    return is_detection(self.config)

  @functools.cached_property
  def p_train_step(self) -> Callable:
    """(replicated state, sharded batch) -> (state, metrics): `steps.train_step`, or
    `detection.train_step`, on every device."""
    if self.detection:
      step = functools.partial(detection.train_step, weights=loss_weights(self.config))
    else:
      step = steps.train_step
    return self.dp.pmap_step(functools.partial(
        step, normalize=self.normalize, schedule=self.schedule, recipe=self.recipe))

  @functools.cached_property
  def p_eval_step(self) -> Callable:
    """(replicated state, sharded masked batch) -> summed metrics (`steps.eval_step`), or each
    device's detections (`detection.eval_step`)."""
    if self.detection:
      return self.dp.pmap(functools.partial(
          detection.eval_step, normalize=self.normalize,
          max_detections=self.config.detection.max_detections, flip=self.config.tta_flip),
          in_axes=parallel.STATE_AND_BATCH)
    return self.dp.pmap(functools.partial(steps.eval_step, normalize=self.normalize,
                                          recipe=self.recipe), in_axes=parallel.STATE_AND_BATCH)

  @functools.cached_property
  def p_infer_step(self) -> Callable:
    """(replicated state, sharded uint8 images) -> logits in evaluation mode."""
    return self.dp.pmap(functools.partial(steps.infer_step, normalize=self.normalize),
                        in_axes=parallel.STATE_AND_BATCH)

  def train_step_memory_bytes(self, state, batch) -> int | None:
    """Per-device bytes of the compiled train step for these arguments, where XLA reports them.

    After a step has run with arguments of these shapes, this reuses its compilation.
    """
    return parallel.compiled_memory_bytes(self.p_train_step.lower(state, batch).compile())


def build(config, dp: parallel.DataParallel, data_spec: DataSpec) -> Run:
  """The config's run on `dp` for data described by data_spec (see `Run`)."""
  steps_per_epoch = sampling.steps_per_epoch(data_spec.num_train_examples, config.batch_size)
  total_steps = config_lib.total_steps(config, data_spec.num_train_examples)
  schedule = optimizer.create_schedule(config, steps_per_epoch, total_steps)
  model = create_model(config, data_spec.num_classes, data_spec.image_shape)
  return Run(config=config, dp=dp, data=data_spec, model=model, schedule=schedule,
             tx=optimizer.create_optimizer(config, schedule), steps_per_epoch=max(steps_per_epoch, 1),
             total_steps=total_steps)


def data_parallel(config) -> parallel.DataParallel:
  """Data parallelism over config.num_devices local devices per process.

  num_devices <= 0 means the most local devices over which batch_size splits evenly: all of
  them where it can (3 devices and a batch of 128 use 2), so a default config runs on any
  machine. An explicit count is kept, and config.validate refuses it if it does not divide.
  """
  if config.num_devices > 0:
    return parallel.DataParallel(config.num_devices)
  return parallel.DataParallel(parallel.most_devices_dividing(config.batch_size))


def device_note(config, dp: parallel.DataParallel) -> str:
  """Why a run with num_devices <= 0 uses fewer than all local devices; '' when it uses all."""
  available = parallel.local_device_count()
  if config.num_devices > 0 or dp.num_local_devices == available:
    return ''
  return (f'; batch_size={config.batch_size} does not split over all {available}, so '
          f'num_devices=-1 uses {dp.num_local_devices} (a batch_size that is a multiple of '
          f'{available} uses all)')


def compute_dtype(config):
  """The activations' dtype: bfloat16 with half_precision (parameters stay float32), else float32."""
  return jnp.bfloat16 if config.half_precision else jnp.float32


def is_detection(config) -> bool:
  return datasets.get_info(config.dataset).modality == 'detection'


def loss_weights(config) -> detection.LossWeights:
  """CenterNet's loss settings from config.detection."""
  d = config.detection
  return detection.LossWeights(alpha=d.focal_alpha, beta=d.focal_beta, heatmap=d.heatmap_weight,
                               size=d.size_weight, offset=d.offset_weight)


def create_model(config, num_classes: int, input_shape: tuple[int, int, int]):
  """The config's model for this input (height, width, channels), checked before any work: the
  registry model, or for a detection dataset that model as the backbone of a CenterNet.

  Raises input_shapes.InputShapeError naming the layer whose output would be empty.
  """
  dtype = compute_dtype(config)
  overrides = model_overrides(config)
  make = lambda shape: models.create(config.model, num_classes, input_shape=shape,
                                     small_inputs=config.small_inputs, dtype=dtype, **overrides)
  model = make(input_shape)
  if is_detection(config):
    features.check_backbone(config.model)
    d = config.detection
    return detection_model.CenterNet(model, num_classes, tuple(d.feature_indices),
                                     d.pyramid_width, d.head_width, dtype)
  try:
    input_shapes.check(model, input_shape)
  except input_shapes.InputShapeError as e:
    fits = _smallest_square_input(make, input_shape) if len(input_shape) == 3 else None
    if fits is None:
      raise
    raise input_shapes.InputShapeError(f'{e} (--config.image_size={fits} or larger fits)') from None
  return model


def model_overrides(config) -> dict:
  """The module fields the config sets: auxiliary heads, stochastic depth and model_kwargs."""
  # config.validate has checked that a positive weight comes with a model that has the heads.
  overrides = {'aux_logits': True} if config.aux_loss_weight > 0 else {}
  if config.drop_path_rate > 0:  # Likewise checked: the model has the field.
    overrides['drop_path_rate'] = config.drop_path_rate
  overrides.update(config_lib.model_kwargs(config))
  return overrides


def _smallest_square_input(make: Callable, input_shape, largest: int = 1024) -> int | None:
  """The smallest n for which make((n, n, channels)) takes its input, by bisection above the
  failing input_shape's height (a larger image never empties a map that a smaller one fills)."""
  fits = lambda n: _takes(make((n, n, input_shape[-1])), (n, n, input_shape[-1]))
  low, high = max(input_shape[:2]), largest
  if not fits(high):
    return None
  while high - low > 1:
    middle = (low + high) // 2
    low, high = (low, middle) if fits(middle) else (middle, high)
  return high


def _takes(model, input_shape) -> bool:
  try:
    input_shapes.check(model, input_shape)
  except input_shapes.InputShapeError:
    return False
  return True

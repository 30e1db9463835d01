"""Input pipelines: what the training loop iterates over, already on the devices.

`create` picks one from the dataset's catalogue entry:
- `InMemoryPipeline` for small datasets: both splits live on every device as uint8, and each
  batch is gathered, augmented and masked there inside jit. Per step the host sends one scalar
  (the step number); once per epoch it sends the epoch's order.
- `streaming.StreamingPipeline` for ImageNet-size datasets: host threads read and crop images.

Both yield the same batches: training {'image': uint8 [devices, per_device, h, w, c],
'label': int32 [devices, per_device]}, evaluation the same plus 'mask': float32 (0 = padding),
and both follow `sampling`, so batches are a pure function of (seed, step).
"""
import dataclasses
import functools
from typing import Iterator, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from convjax import augment, config as config_lib, data, parallel, sampling

# Folded into the seed so augmentation draws differ from initialisation and dropout draws.
_AUGMENT_STREAM = 0x61756720


class Pipeline(Protocol):
  """What the training loop needs of its data: batches already on the devices.

  info: the dataset's catalogue entry (data.DatasetInfo: mean, std, class names, ...).
  image_shape: (height, width, channels) of the batches' images.
  """
  info: data.DatasetInfo
  image_shape: tuple[int, int, int]
  num_train_examples: int
  num_test_examples: int

  def train_batches(self, start_step: int, stop_step: int) -> Iterator[dict]:
    """Global batches start_step .. stop_step - 1, this process's devices' parts:
    image uint8 [devices, per_device, h, w, c], label int32 [devices, per_device]."""

  def eval_batches(self) -> Iterator[dict]:
    """The test split in order, exactly once: train_batches' keys plus mask float32
    [devices, per_device] (0 = padding)."""


def augmentation_from_config(config) -> augment.Augmentation:
  """The in-memory augmentation: each of augment.Augmentation's fields from config.augment.

  Field by field, so a field added to Augmentation but not to the config fails here, by name. A
  config built from plain data (JSON) holds lists where the dataclass's fields are tuples.
  """
  def setting(name: str):
    value = config.augment[name]
    return tuple(value) if isinstance(value, list) else value

  return augment.Augmentation(**{field.name: setting(field.name)
                                 for field in dataclasses.fields(augment.Augmentation)})


def create(config, dp: parallel.DataParallel) -> Pipeline:
  """The config's dataset, loaded or opened, behind the pipeline that suits it."""
  info = data.get_info(config.dataset)
  eval_batch_size = config_lib.eval_batch_size(config, dp.num_devices)
  if eval_batch_size != config.eval_batch_size and parallel.process_index() == 0:
    print(f'evaluating in batches of {eval_batch_size}: eval_batch_size={config.eval_batch_size} '
          f'rounded up to a multiple of the {dp.num_devices} devices', flush=True)
  if info.streaming:
    from convjax import streaming  # Imported here: only large datasets need PIL and threads.
    dataset = data.open_streaming(config.dataset, config.data_dir, config.download,
                                  config.manual_dir)
    return streaming.StreamingPipeline(
        dataset, dp, config.batch_size, eval_batch_size, config.seed,
        image_size=config.image_size or streaming.DEFAULT_IMAGE_SIZE, flip=config.augment.flip,
        randaugment=(config.augment.randaugment_ops, config.augment.randaugment_magnitude),
        min_crop_scale=config.augment.min_crop_scale, eval_crop_ratio=config.eval_crop_ratio,
        num_workers=config.input_workers, prefetch=config.prefetch_batches)
  dataset = data.load(config.dataset, config.data_dir, config.data_source, config.download,
                      config.image_size)
  return InMemoryPipeline(dataset, dp, config.batch_size, eval_batch_size, config.seed,
                          augmentation_from_config(config))


class InMemoryPipeline:
  """A small dataset resident on every local device, batched there: a `Pipeline`.

  Attributes: info (the catalogue entry), image_shape (h, w, c), num_train_examples,
  num_test_examples.
  """

  def __init__(self, dataset: data.Dataset, dp: parallel.DataParallel, batch_size: int,
               eval_batch_size: int, seed: int,
               augmentation: augment.Augmentation = augment.Augmentation()):
    self.info, self.image_shape = dataset.info, dataset.image_shape
    self.num_train_examples, self.num_test_examples = len(dataset.train), len(dataset.test)
    self._dp, self._seed = dp, seed
    self._steps_per_epoch = sampling.steps_per_epoch(len(dataset.train), batch_size)
    self._eval_batch_size = eval_batch_size
    self._train = dp.replicate({'image': dataset.train.images, 'label': dataset.train.labels})
    self._test = dp.replicate({'image': dataset.test.images, 'label': dataset.test.labels})
    self._p_train_batch = dp.pmap(functools.partial(
        _train_batch, batch_size=batch_size, steps_per_epoch=self._steps_per_epoch,
        local_batch=batch_size // dp.num_devices, augmentation=augmentation,
        fill=augment.mean_pixel(self.info.mean), seed=seed))
    self._p_eval_batch = dp.pmap(functools.partial(
        _eval_batch, local_batch=eval_batch_size // dp.num_devices))

  def train_batches(self, start_step: int, stop_step: int) -> Iterator[dict]:
    """Global batches start_step .. stop_step - 1, this process's devices' parts, on device."""
    epoch, order = None, None
    for step in range(start_step, stop_step):
      if step // self._steps_per_epoch != epoch:
        epoch = step // self._steps_per_epoch
        order = self._dp.replicate(
            sampling.epoch_order(self.num_train_examples, self._seed, epoch).astype(np.int32))
      yield self._p_train_batch(self._train, order, self._scalar(step))

  def eval_batches(self) -> Iterator[dict]:
    """The test split in order, exactly once, with masked padding; on device."""
    for batch in range(sampling.num_eval_batches(self.num_test_examples, self._eval_batch_size)):
      yield self._p_eval_batch(self._test, self._scalar(batch * self._eval_batch_size))

  def _scalar(self, value: int) -> jax.Array:
    return self._dp.replicate(np.int32(value))


def _train_batch(split: dict, order: jnp.ndarray, step: jnp.ndarray, *, batch_size: int,
                 steps_per_epoch: int, local_batch: int, augmentation: augment.Augmentation,
                 fill, seed: int) -> dict:
  """Per device: this device's part of global batch `step`, which is slice
  step % steps_per_epoch of the epoch's order (see `sampling`).

  split: image uint8 [n, h, w, c], label int32 [n]; order int32 [n]; step int32 [].
  Returns image uint8 [local_batch, h, w, c], label int32 [local_batch].
  """
  first = parallel.device_index() * local_batch  # This device's place in the global batch.
  offset = (step % steps_per_epoch) * batch_size + first
  indices = jax.lax.dynamic_slice(order, (offset,), (local_batch,))
  images, labels = split['image'][indices], split['label'][indices]
  if augmentation.enabled:
    step_key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), _AUGMENT_STREAM), step)
    keys = jax.vmap(functools.partial(jax.random.fold_in, step_key))(first + jnp.arange(local_batch))
    images = augment.augment_batch(keys, images, augmentation, fill)
  return {'image': images, 'label': labels}


def _eval_batch(split: dict, offset: jnp.ndarray, *, local_batch: int) -> dict:
  """Per device: positions offset + first .. of the split, clamped, with mask 0 past the end."""
  num_examples = split['label'].shape[0]
  positions = offset + parallel.device_index() * local_batch + jnp.arange(local_batch)
  indices = jnp.minimum(positions, num_examples - 1)
  return {'image': split['image'][indices], 'label': split['label'][indices],
          'mask': (positions < num_examples).astype(jnp.float32)}

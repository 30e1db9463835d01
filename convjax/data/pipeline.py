"""Input pipelines: what the training loop iterates over, already on the devices.

Two kinds, for two sizes of dataset (training.inputs picks one from the catalogue entry):
- `InMemoryPipeline` for small datasets: both splits live on every device as uint8, and each
  batch is gathered, augmented and masked there inside jit. Per step the host sends one scalar
  (the step number); once per epoch it sends the epoch's order.
- `streaming.StreamingPipeline` for ImageNet-size datasets: host threads read and crop images.

Both yield the same batches: training {'image': uint8 [devices, per_device, h, w, c],
'label': int32 [devices, per_device]}, evaluation the same plus 'mask': float32 (0 = padding),
and both follow `sampling`, so batches are a pure function of (seed, step). An in-memory
dataset's further targets (a detection dataset's 'boxes' and 'classes') travel in its batches
too.
"""
import functools
from typing import Iterator, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from convjax import parallel
from convjax.data import augment, datasets, sampling, scenes

# Folded into the seed so augmentation draws differ from initialisation and dropout draws.
_AUGMENT_STREAM = 0x61756720


class Pipeline(Protocol):
  """What the training loop needs of its data: batches already on the devices.

  info: the dataset's catalogue entry (datasets.DatasetInfo: mean, std, class names, ...).
  image_shape: (height, width, channels) of the batches' images.
  """
  info: datasets.DatasetInfo
  image_shape: tuple[int, int, int]
  num_train_examples: int
  num_test_examples: int

  def train_batches(self, start_step: int, stop_step: int) -> Iterator[dict]:
    """Global batches start_step .. stop_step - 1, this process's devices' parts:
    image uint8 [devices, per_device, h, w, c], label int32 [devices, per_device]."""

  def eval_batches(self) -> Iterator[dict]:
    """The test split in order, exactly once: train_batches' keys plus mask float32
    [devices, per_device] (0 = padding)."""


class InMemoryPipeline:
  """A small dataset resident on every local device, batched there: a `Pipeline`.

  Attributes: info (the catalogue entry), image_shape (h, w, c), num_train_examples,
  num_test_examples, dataset (the host copy it was made from, for models trained beside the net
  on the same split, training/baseline.py).
  """

  def __init__(self, dataset: datasets.Dataset, dp: parallel.DataParallel, batch_size: int,
               eval_batch_size: int, seed: int,
               augmentation: augment.Augmentation = augment.Augmentation()):
    self.dataset = dataset
    self.info, self.image_shape = dataset.info, dataset.image_shape
    self.num_train_examples, self.num_test_examples = len(dataset.train), len(dataset.test)
    self._dp, self._seed = dp, seed
    self._steps_per_epoch = sampling.steps_per_epoch(len(dataset.train), batch_size)
    self._eval_batch_size = eval_batch_size
    self._train, self._test = (
        dp.replicate({'image': split.images, 'label': split.labels, **split.targets})
        for split in (dataset.train, dataset.test))
    # Every argument is whole on every device; each device returns its own part of the batch.
    self._p_train_batch = dp.pmap(functools.partial(
        _train_batch, batch_size=batch_size, steps_per_epoch=self._steps_per_epoch,
        local_batch=batch_size // dp.num_devices, augmentation=augmentation,
        fill=augment.mean_pixel(self.info.mean), seed=seed), in_axes=parallel.REPLICATED)
    self._p_eval_batch = dp.pmap(functools.partial(
        _eval_batch, local_batch=eval_batch_size // dp.num_devices),
        in_axes=parallel.REPLICATED)

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

  def detection_truth(self) -> tuple[dict, None]:
    """A detection dataset's test split in COCO's JSON format (scenes.coco_annotations), and
    None: its detections are already in the images' pixels (a streamed pipeline's are not)."""
    test = self.dataset.test
    return (scenes.coco_annotations(test.targets['boxes'], test.targets['classes'],
                                    self.info.label_names, self.image_shape[:2]), None)

  def _scalar(self, value: int) -> jax.Array:
    return self._dp.replicate(np.int32(value))


def _train_batch(split: dict, order: jnp.ndarray, step: jnp.ndarray, *, batch_size: int,
                 steps_per_epoch: int, local_batch: int, augmentation: augment.Augmentation,
                 fill, seed: int) -> dict:
  """Per device: this device's part of global batch `step`, which is slice
  step % steps_per_epoch of the epoch's order (see `sampling`).

  split: image uint8 [n, h, w, c], label int32 [n], any targets [n, ...]; order int32 [n];
  step int32 [].
  Returns each of split's arrays at this device's local_batch examples: image uint8
  [local_batch, h, w, c], label int32 [local_batch], ...; a scene's boxes move with its image.
  """
  first = parallel.device_index() * local_batch  # This device's place in the global batch.
  offset = (step % steps_per_epoch) * batch_size + first
  indices = jax.lax.dynamic_slice(order, (offset,), (local_batch,))
  batch = {key: values[indices] for key, values in split.items()}
  if augmentation.enabled:
    step_key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), _AUGMENT_STREAM), step)
    keys = jax.vmap(functools.partial(jax.random.fold_in, step_key))(first + jnp.arange(local_batch))
    if 'boxes' in batch:
      batch['image'], batch['boxes'], batch['classes'] = jax.vmap(
          functools.partial(augment.augment_scene, augmentation=augmentation))(
              keys, batch['image'], batch['boxes'], batch['classes'])
    else:
      batch['image'] = augment.augment_batch(keys, batch['image'], augmentation, fill)
  return batch


def _eval_batch(split: dict, offset: jnp.ndarray, *, local_batch: int) -> dict:
  """Per device: positions offset + first .. of the split, clamped, with mask 0 past the end."""
  num_examples = split['label'].shape[0]
  positions = offset + parallel.device_index() * local_batch + jnp.arange(local_batch)
  indices = jnp.minimum(positions, num_examples - 1)
  return {**{key: values[indices] for key, values in split.items()},
          'mask': (positions < num_examples).astype(jnp.float32)}

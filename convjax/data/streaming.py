"""The pipeline for ImageNet-size datasets: read, decode and crop on host threads, then shard.

Images vary in size, so cropping to a fixed shape happens on the host, per example:
- training: Inception-style random-resized-crop (a random area fraction in
  [min_crop_scale, 1] and aspect ratio in [3/4, 4/3], resized to image_size), then a random
  horizontal flip and RandAugment when enabled;
- evaluation: resize the shorter side to image_size / eval_crop_ratio (256 for 224), then take
  the central image_size square.

A pool of threads reads and decodes (TFDS decodes with Pillow, which releases the GIL), a
background thread keeps `prefetch` batches ready, and `DataParallel.prefetch` copies them to the
devices ahead of the step. Each process reads only its own part of every global batch, and
each example's random crop is drawn from (seed, step, position in the global batch), so batches
are a pure function of (seed, step) however many threads, processes or devices there are.
"""
import concurrent.futures
import math
import queue
import threading
from typing import Iterator

import numpy as np
from PIL import Image

from convjax import parallel
from convjax.data import augment, datasets, randaugment, sampling

DEFAULT_IMAGE_SIZE = 224
_ASPECT_RATIOS = (3 / 4, 4 / 3)
_CROP_ATTEMPTS = 10


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """uint8 [h, w, c] -> uint8 [height, width, c], bilinear (antialiased when shrinking)."""
  channels = image.shape[2]
  pil = Image.fromarray(image[..., 0] if channels == 1 else image)
  out = np.asarray(pil.resize((width, height), Image.BILINEAR))
  return out.reshape(height, width, channels)


def random_resized_crop(image: np.ndarray, rng: np.random.Generator, size: int,
                        min_scale: float = 0.08) -> np.ndarray:
  """uint8 [h, w, c] -> uint8 [size, size, c]: a random region of area fraction in
  [min_scale, 1] and aspect ratio in [3/4, 4/3], resized (Szegedy et al. 2015; torchvision's
  algorithm: 10 tries, then the whole image clipped to the ratio range)."""
  height, width = image.shape[:2]
  log_ratios = np.log(_ASPECT_RATIOS)
  for _ in range(_CROP_ATTEMPTS):
    area = height * width * rng.uniform(min_scale, 1.0)
    ratio = math.exp(rng.uniform(*log_ratios))
    crop_w, crop_h = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
    if 0 < crop_w <= width and 0 < crop_h <= height:
      top = int(rng.integers(0, height - crop_h + 1))
      left = int(rng.integers(0, width - crop_w + 1))
      return resize(image[top:top + crop_h, left:left + crop_w], size, size)
  ratio = min(max(width / height, _ASPECT_RATIOS[0]), _ASPECT_RATIOS[1])
  crop_w, crop_h = min(width, round(height * ratio)), min(height, round(width / ratio))
  return resize(_centre(image, crop_h, crop_w), size, size)


def centre_crop(image: np.ndarray, size: int, crop_ratio: float = 0.875) -> np.ndarray:
  """uint8 [h, w, c] -> uint8 [size, size, c]: shorter side resized to size / crop_ratio, then
  the central square."""
  height, width = image.shape[:2]
  short = round(size / crop_ratio)
  scale = short / min(height, width)
  resized = resize(image, max(size, round(height * scale)), max(size, round(width * scale)))
  return _centre(resized, size, size)


def _centre(image: np.ndarray, height: int, width: int) -> np.ndarray:
  top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
  return image[top:top + height, left:left + width]


class StreamingPipeline:
  """Batches of a large dataset, read on host threads: a `pipeline.Pipeline`, like InMemoryPipeline."""

  def __init__(self, dataset: datasets.StreamingDataset, dp: parallel.DataParallel, batch_size: int,
               eval_batch_size: int, seed: int, image_size: int = DEFAULT_IMAGE_SIZE,
               flip: bool = True, min_crop_scale: float = 0.08, eval_crop_ratio: float = 0.875,
               num_workers: int = 8, prefetch: int = 2,
               randaugment: tuple[int, float] = (0, 9.0)):
    self.info = dataset.info
    self.image_shape = (image_size, image_size, 3)
    self.num_train_examples, self.num_test_examples = len(dataset.train), len(dataset.test)
    self._dataset, self._dp, self._seed = dataset, dp, seed
    self._batch_size, self._eval_batch_size = batch_size, eval_batch_size
    self._size, self._flip, self._min_scale, self._crop_ratio = (
        image_size, flip, min_crop_scale, eval_crop_ratio)
    self._randaugment = randaugment  # (N ops, magnitude M); N = 0 is off.
    self._fill = augment.mean_pixel(dataset.info.mean)
    self._pool = concurrent.futures.ThreadPoolExecutor(num_workers)
    self._prefetch = prefetch

  def _process_part(self, batch_size: int) -> tuple[int, int]:
    """(first position, count) of this process's part of a global batch."""
    count = batch_size // parallel.process_count()
    return parallel.process_index() * count, count

  def train_example(self, index: int, step: int, position: int) -> dict:
    """Example `index` cropped with the draws of (seed, step, position in the global batch):
    {'image': uint8 [size, size, 3], 'label'}."""
    rng = np.random.default_rng([self._seed, step, position])
    example = self._dataset.train[int(index)]
    image = random_resized_crop(rgb(example['image']), rng, self._size, self._min_scale)
    if self._flip and rng.random() < 0.5:
      image = image[:, ::-1]
    num_ops, magnitude = self._randaugment
    if num_ops:  # Drawn after the crop and flip, so those stay as they were without it.
      image = randaugment.host_randaugment(int(rng.integers(2 ** 31)), image, num_ops, magnitude,
                                           self._fill)
    return {'image': image, 'label': np.int32(example['label'])}

  def eval_example(self, index: int) -> dict:
    example = self._dataset.test[int(index)]
    return {'image': centre_crop(rgb(example['image']), self._size, self._crop_ratio),
            'label': np.int32(example['label'])}

  def host_train_batch(self, step: int) -> dict[str, np.ndarray]:
    """This process's part of global batch `step`: image uint8 [n, size, size, 3], label [n]."""
    first, count = self._process_part(self._batch_size)
    indices = sampling.train_indices(self.num_train_examples, self._batch_size, self._seed, step,
                                     first, count)
    return _stack(self._pool.map(self.train_example, indices, [step] * count,
                                 first + np.arange(count)))

  def host_eval_batch(self, batch: int) -> dict[str, np.ndarray]:
    """This process's part of evaluation batch `batch`, with 'mask' float32 [n] (0 = padding)."""
    first, count = self._process_part(self._eval_batch_size)
    indices, mask = sampling.eval_indices(self.num_test_examples, self._eval_batch_size, batch,
                                          first, count)
    return {**_stack(self._pool.map(self.eval_example, indices)), 'mask': mask}

  def train_batches(self, start_step: int, stop_step: int) -> Iterator[dict]:
    """Global batches start_step .. stop_step - 1, this process's part, on its devices."""
    return self._to_devices(map(self.host_train_batch, range(start_step, stop_step)))

  def eval_batches(self) -> Iterator[dict]:
    """The evaluation split in order, exactly once, with masked padding; on the devices."""
    count = sampling.num_eval_batches(self.num_test_examples, self._eval_batch_size)
    return self._to_devices(map(self.host_eval_batch, range(count)))

  def _to_devices(self, host_batches: Iterator[dict]) -> Iterator[dict]:
    """Builds batches on a background thread and copies them to the devices, both ahead."""
    return self._dp.prefetch(_background(host_batches, self._prefetch), self._prefetch)


def _stack(examples) -> dict[str, np.ndarray]:
  """Examples {'image': [h, w, c], 'label': [], ...} -> one batch {'image': [n, h, w, c], ...}."""
  examples = list(examples)
  return {key: np.stack([example[key] for example in examples]) for key in examples[0]}


def rgb(image) -> np.ndarray:
  """Greyscale images (a few ImageNet JPEGs) become 3-channel: uint8 [h, w, 1 or 3] -> [h, w, 3]."""
  image = np.asarray(image, np.uint8)
  return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image


def _background(iterator: Iterator, size: int) -> Iterator:
  """Runs `iterator` on a thread, keeping up to `size` items ready; re-raises its errors here.

  When the consumer stops early (an error, or a break), the thread sees `stop` and ends.
  """
  ready: queue.Queue = queue.Queue(maxsize=max(size, 1))
  stop, done = threading.Event(), object()

  def put(item) -> bool:
    while not stop.is_set():
      try:
        ready.put(item, timeout=0.1)
        return True
      except queue.Full:
        pass
    return False

  def produce() -> None:
    try:
      for item in iterator:
        if not put(item):
          return
    except BaseException as e:  # pylint: disable=broad-except
      put(e)
    put(done)

  thread = threading.Thread(target=produce, daemon=True)
  thread.start()
  try:
    while (item := ready.get()) is not done:
      if isinstance(item, BaseException):
        raise item
      yield item
  finally:
    stop.set()

"""Datasets and batches.

Each dataset loads once into host memory as uint8 images [n, height, width, channels] and int32
labels [n]. Normalisation happens on the device inside the jitted step (`normalize`), so the host
only gathers uint8 rows.

Batches are a pure function of (seed, step): epoch e is the permutation
`np.random.default_rng([seed, e])`, and step s reads slice s % steps_per_epoch of it. A run resumed
at step s therefore sees exactly the batches an uninterrupted run sees.
"""
import dataclasses
import gzip
import os
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np

# IDX file names shared by MNIST-style datasets; `.gz` versions are read too.
_IDX_FILES = {
    'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
    'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'),
}
# Where Debian's dataset-* packages put IDX files, per dataset.
_SYSTEM_IDX_DIRS = {'fashion_mnist': '/usr/share/datasets/fashion-mnist'}
NUM_CLASSES = {'digits': 10, 'fashion_mnist': 10, 'cifar10': 10}
IDX_DATASETS = ('fashion_mnist',)  # Also readable from local IDX files; the rest come from TFDS.
DATA_SOURCES = ('auto', 'idx', 'tfds')


class DatasetNotFoundError(RuntimeError):
  """The dataset is not on this machine and could not be fetched."""


@dataclasses.dataclass(frozen=True)
class Split:
  """images: uint8 [n, height, width, channels]; labels: int32 [n]."""
  images: np.ndarray
  labels: np.ndarray

  def __len__(self) -> int:
    return len(self.labels)


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Train and test splits plus the train split's per-channel mean and std (in [0, 1] units)."""
  name: str
  train: Split
  test: Split
  num_classes: int
  mean: tuple[float, ...]
  std: tuple[float, ...]

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.train.images.shape[1:])


def list_datasets() -> list[str]:
  return sorted(NUM_CLASSES)


def load(name: str, data_dir: str | None = None, source: str = 'auto', download: bool = False,
         image_size: int | None = None) -> Dataset:
  """Loads a dataset into host memory.

  Args:
    name: 'digits', 'fashion_mnist' or 'cifar10'.
    data_dir: a directory holding IDX files, or TFDS's data_dir.
    source: for IDX datasets, 'idx' (local files only), 'tfds', or 'auto' (IDX files when found,
      else TFDS).
    download: let TFDS download and prepare a missing dataset (needs internet and TensorFlow).
    image_size: when set, resize both splits once to [image_size, image_size] (bilinear).
  """
  if name not in NUM_CLASSES:
    raise ValueError(f"unknown dataset '{name}'; valid datasets are: {', '.join(list_datasets())}")
  if name == 'digits':
    train, test = _load_digits()
  elif name in IDX_DATASETS:
    train, test = _load_idx_dataset(name, data_dir, source, download)
  else:
    train, test = _load_tfds(name, data_dir, download)
  if image_size:
    train, test = _resize(train, image_size), _resize(test, image_size)
  mean, std = _channel_stats(train.images)
  return Dataset(name, train, test, NUM_CLASSES[name], mean, std)


def _load_digits() -> tuple[Split, Split]:
  """scikit-learn's 1,797 8x8 digits, split 1,438 / 359 by a fixed permutation (seed 0)."""
  from sklearn import datasets as sk_datasets  # Imported here: only this dataset needs it.
  digits = sk_datasets.load_digits()
  # Pixel values are counts 0..16; scale them onto uint8's 0..255 like every other dataset.
  images = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None]
  labels = digits.target.astype(np.int32)
  order = np.random.default_rng(0).permutation(len(labels))
  num_test = len(labels) // 5
  test, train = order[:num_test], order[num_test:]
  return Split(images[train], labels[train]), Split(images[test], labels[test])


def _load_idx_dataset(name, data_dir, source, download) -> tuple[Split, Split]:
  if source not in DATA_SOURCES:
    raise ValueError(f"unknown data_source '{source}'; valid sources are: {', '.join(DATA_SOURCES)}")
  idx_dir = _find_idx_dir(name, data_dir) if source in ('auto', 'idx') else None
  if idx_dir:
    return tuple(_read_idx_split(idx_dir, split) for split in ('train', 'test'))
  if source == 'idx':
    raise DatasetNotFoundError(_how_to_get(name, data_dir))
  return _load_tfds(name, data_dir, download)


def _find_idx_dir(name: str, data_dir: str | None) -> str | None:
  candidates = []
  if data_dir:
    candidates += [data_dir, os.path.join(data_dir, name), os.path.join(data_dir, name.replace('_', '-'))]
  if name in _SYSTEM_IDX_DIRS:
    candidates.append(_SYSTEM_IDX_DIRS[name])
  for directory in candidates:
    if all(_idx_path(directory, f) for pair in _IDX_FILES.values() for f in pair):
      return directory
  return None


def _idx_path(directory: str, stem: str) -> str | None:
  for path in (os.path.join(directory, stem), os.path.join(directory, stem + '.gz')):
    if os.path.isfile(path):
      return path
  return None


def _read_idx_split(directory: str, split: str) -> Split:
  images_stem, labels_stem = _IDX_FILES[split]
  images = read_idx(_idx_path(directory, images_stem))
  labels = read_idx(_idx_path(directory, labels_stem))
  return Split(images[..., None], labels.astype(np.int32))


def read_idx(path: str) -> np.ndarray:
  """Reads an IDX file (optionally gzipped) of unsigned bytes into an array of its shape."""
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'rb') as f:
    content = f.read()
  zero, dtype_code, rank = content[0] * 256 + content[1], content[2], content[3]
  if zero != 0 or dtype_code != 0x08:
    raise ValueError(f'{path} is not an IDX file of unsigned bytes')
  shape = tuple(int.from_bytes(content[4 + 4 * i: 8 + 4 * i], 'big') for i in range(rank))
  return np.frombuffer(content, np.uint8, offset=4 + 4 * rank).reshape(shape)


def _load_tfds(name, data_dir, download) -> tuple[Split, Split]:
  """Reads both splits through TFDS's array_record data source (no TensorFlow needed to read)."""
  import tensorflow_datasets as tfds  # Imported here: slow to import, and only this path needs it.
  try:
    sources = [tfds.data_source(name, split=split, data_dir=data_dir, download=download)
               for split in ('train', 'test')]
  except Exception as e:  # TFDS raises many types: not found, no network, no TensorFlow.
    raise DatasetNotFoundError(f'{_how_to_get(name, data_dir)} (TFDS said: {e})') from e
  return tuple(_split_from_source(source) for source in sources)


def _split_from_source(source) -> Split:
  examples = [source[i] for i in range(len(source))]
  images = np.stack([np.asarray(ex['image'], np.uint8) for ex in examples])
  labels = np.array([ex['label'] for ex in examples], np.int32)
  return Split(images.reshape(images.shape[:3] + (-1,)), labels)


def _how_to_get(name: str, data_dir: str | None) -> str:
  if name not in IDX_DATASETS:
    return (f"dataset '{name}' was not found in TFDS's data_dir={data_dir!r}; get it in one of "
            "two ways: with internet, pass --config.download=True so TFDS downloads and prepares "
            "it (preparing needs `pip install tensorflow`); or prepare it with TFDS on a machine "
            "with internet and copy its directory into --config.data_dir")
  return (f"dataset '{name}' was not found locally (data_dir={data_dir!r}); get it in one of three "
          f"ways: on Debian run `apt-get install dataset-{name.replace('_', '-')}`, which puts its IDX "
          f"files in {_SYSTEM_IDX_DIRS.get(name, '/usr/share/datasets')}; or put the four IDX files "
          "(train-images-idx3-ubyte.gz ...) in --config.data_dir; or, with internet, pass "
          "--config.download=True so TFDS downloads and prepares it (preparing needs `pip install "
          "tensorflow`)")


def _resize(split: Split, size: int) -> Split:
  images = jnp.asarray(split.images, jnp.float32)
  shape = (images.shape[0], size, size, images.shape[3])
  resized = jax.image.resize(images, shape, 'bilinear')
  return Split(np.asarray(jnp.clip(jnp.round(resized), 0, 255), np.uint8), split.labels)


def _channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
  pixels = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255
  return tuple(pixels.mean(0).tolist()), tuple(pixels.std(0).tolist())


def normalize(images: jnp.ndarray, mean, std, dtype=jnp.float32) -> jnp.ndarray:
  """uint8 [..., channels] -> (x / 255 - mean) / std in `dtype`. Runs on the device, inside jit."""
  mean, std = jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32)
  return ((images.astype(jnp.float32) / 255 - mean) / std).astype(dtype)


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  """Training drops the last partial batch, so every step sees a full global batch."""
  return num_examples // batch_size


def train_batch(split: Split, batch_size: int, seed: int, step: int,
                process_index: int = 0, process_count: int = 1) -> dict[str, np.ndarray]:
  """This process's share of global batch `step`: image uint8 [batch_size / process_count, h, w, c].

  The global batch is a pure function of (seed, step); process p takes the p-th contiguous slice.
  """
  epoch, index = divmod(step, steps_per_epoch(len(split), batch_size))
  order = _epoch_permutation(len(split), seed, epoch)
  batch = order[index * batch_size:(index + 1) * batch_size]
  per_process = batch_size // process_count
  batch = batch[process_index * per_process:(process_index + 1) * per_process]
  return {'image': split.images[batch], 'label': split.labels[batch]}


_permutation_cache: dict[tuple[int, int, int], np.ndarray] = {}


def _epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
  key = (num_examples, seed, epoch)
  if key not in _permutation_cache:
    _permutation_cache.clear()  # Only the current epoch is ever needed again.
    _permutation_cache[key] = np.random.default_rng([seed, epoch]).permutation(num_examples)
  return _permutation_cache[key]


def train_batches(split: Split, batch_size: int, seed: int, start_step: int, num_steps: int,
                  process_index: int = 0, process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """Batches for steps start_step .. num_steps - 1 (see `train_batch`)."""
  for step in range(start_step, num_steps):
    yield train_batch(split, batch_size, seed, step, process_index, process_count)


def eval_batches(split: Split, batch_size: int, process_index: int = 0,
                 process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """Every example exactly once, in order, in global batches of `batch_size`.

  The last batch is padded with zero images whose `mask` is 0, so any batch size and any
  device count count every example once. Yields image uint8 [local_batch, h, w, c],
  label int32 [local_batch] and mask float32 [local_batch], this process's slice.
  """
  per_process = batch_size // process_count
  for start in range(0, len(split), batch_size):
    stop = min(start + batch_size, len(split))
    pad = batch_size - (stop - start)
    batch = {
        'image': _pad(split.images[start:stop], pad),
        'label': _pad(split.labels[start:stop], pad),
        'mask': _pad(np.ones(stop - start, np.float32), pad),
    }
    local = slice(process_index * per_process, (process_index + 1) * per_process)
    yield {k: v[local] for k, v in batch.items()}


def _pad(array: np.ndarray, pad: int) -> np.ndarray:
  return np.pad(array, [(0, pad)] + [(0, 0)] * (array.ndim - 1)) if pad else array

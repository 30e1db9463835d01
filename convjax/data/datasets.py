"""The dataset catalogue, and loading datasets into host memory or opening them for streaming.

Every dataset is named as in tensorflow-datasets, except scikit-learn's bundled `digits`. Each has
a modality: images [h, w, c], audio (waveforms [samples, 1], convjax/data/speech.py), video
(clips [frames, h, w, c], convjax/data/video.py), text (UTF-8 bytes [length, 1],
convjax/data/text.py) or detection (scenes [h, w, c] with boxes, convjax/data/scenes.py); the arrays called "images" below are those examples, whatever their
modality.
`CATALOGUE` documents each one's preprocessing: its normalisation statistics (per channel, in
[0, 1] pixel units, of the training split), whether a horizontal flip keeps the class, and
whether it is small enough to hold in memory.

- Small datasets (`streaming=False`) load once into host memory as uint8 images
  [n, height, width, channels] and int32 labels [n]; `pipeline.InMemoryPipeline` then keeps them
  on the devices and does all per-batch work there.
- Large datasets (`streaming=True`, ImageNet-size images of varying shape) are opened as TFDS
  random-access data sources; `streaming.StreamingPipeline` reads, decodes and crops them.

Reading goes through TFDS's array_record data sources and needs no TensorFlow. MNIST-style
datasets can also be read from local IDX files.
"""
import dataclasses
import glob
import gzip
import os
import shutil
import socket
import urllib.parse
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from convjax import errors

# ImageNet's statistics (the torchvision convention); Imagenette, an ImageNet subset, shares them.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """One catalogue entry.

  image_shape: the shape of every example: (height, width, channels) of an image, (samples, 1)
    of a waveform, (frames, height, width, channels) of a clip, (bytes, 1) of a text; None where
    sizes vary (streaming).
  mean, std: per-channel normalisation statistics in [0, 1] units (of uint8 pixels / 255, or of
    int16 samples / 32768); `stats` says where from.
  flip: True where a horizontal flip keeps the class (not for digits and characters).
  streaming: read from disk batch by batch instead of holding the dataset in memory.
  eval_split: the TFDS split used as the test set; train_split: the one trained on.
  idx: also readable from local MNIST-style IDX files.
  label_names: what each class index means, where the dataset documents it.
  modality: 'image', 'audio', 'video', 'text' or 'detection' (an image with boxes): what an
    example is, and which loader reads it.
  splits: the ways the dataset divides into train and test that `load` takes; the first is the
    default (spoken_digit also holds out each speaker in turn: 'speaker:NAME').
  """
  name: str
  num_classes: int
  image_shape: tuple[int, int, int] | None
  mean: tuple[float, ...]
  std: tuple[float, ...]
  stats: str
  flip: bool
  streaming: bool = False
  eval_split: str = 'test'
  train_split: str = 'train'
  idx: bool = False
  label_names: tuple[str, ...] = ()
  modality: str = 'image'
  splits: tuple[str, ...] = ('default',)

  @property
  def example_noun(self) -> str:
    """What one example is called in progress lines: 'image', 'clip' or 'text'."""
    return {'image': 'image', 'detection': 'image', 'text': 'text'}.get(self.modality, 'clip')


_DIGITS = tuple(str(i) for i in range(10))
# ImageNet's 1000 classes in label order (sorted WordNet ids, as TFDS and torchvision number
# them), one short name per line; Imagenette's ten are ImageNet classes, in the same order.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'imagenet_classes.txt')) as _f:
  _IMAGENET = tuple(_f.read().splitlines())
_FASHION = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker',
            'Bag', 'Ankle boot')
_VOC = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
        'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa',
        'train', 'tvmonitor')
# COCO's 80 object categories in its own order, which TFDS's labels 0..79 follow.
_COCO = ('person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat',
         'traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat',
         'dog', 'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack',
         'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball',
         'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket',
         'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple',
         'sandwich', 'orange', 'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair',
         'couch', 'potted plant', 'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse',
         'remote', 'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink',
         'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear', 'hair drier',
         'toothbrush')
_IMAGENETTE = ('tench', 'English springer', 'cassette player', 'chain saw', 'church',
               'French horn', 'garbage truck', 'gas pump', 'golf ball', 'parachute')


CATALOGUE = {info.name: info for info in [
    DatasetInfo('digits', 10, (8, 8, 1), (0.3050,), (0.3757,),
                "this project's 1,438-image training split", flip=False, label_names=_DIGITS),
    DatasetInfo('mnist', 10, (28, 28, 1), (0.1307,), (0.3081,),
                'the 60,000 training images', flip=False, idx=True, label_names=_DIGITS),
    DatasetInfo('fashion_mnist', 10, (28, 28, 1), (0.2860,), (0.3530,),
                'the 60,000 training images', flip=True, idx=True, label_names=_FASHION),
    DatasetInfo('kmnist', 10, (28, 28, 1), (0.1918,), (0.3483,),
                'the 60,000 training images', flip=False, idx=True),
    DatasetInfo('cifar10', 10, (32, 32, 3), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                'the 50,000 training images', flip=True,
                label_names=('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog',
                             'horse', 'ship', 'truck')),
    DatasetInfo('cifar100', 100, (32, 32, 3), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
                'the 50,000 training images', flip=True),
    DatasetInfo('svhn_cropped', 10, (32, 32, 3), (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970),
                'the 73,257 training images', flip=False, label_names=_DIGITS),
    DatasetInfo('imagenette', 10, None, IMAGENET_MEAN, IMAGENET_STD,
                "ImageNet's (Imagenette is a 10-class ImageNet subset)", flip=True,
                streaming=True, eval_split='validation', label_names=_IMAGENETTE),
    DatasetInfo('imagenet2012', 1000, None, IMAGENET_MEAN, IMAGENET_STD,
                'the ImageNet training set (the torchvision convention)', flip=True,
                streaming=True, eval_split='validation', label_names=_IMAGENET),
    # The Free Spoken Digit Dataset (TFDS's name): 1 s of 8 kHz audio, int16, centred.
    DatasetInfo('spoken_digit', 10, (8000, 1), (0.0,), (0.0403,),
                "the official split's 2,700 training clips (mean -0.0004, taken as 0 so that "
                'silence stays 0)', flip=False,
                label_names=_DIGITS, modality='audio', splits=('official',)),
    # Clips made from Fashion-MNIST with synthetic motion (convjax/data/video.py); 5 classes.
    DatasetInfo('moving_fashion_mnist', 5, (8, 36, 72, 1), (0.1660,), (0.3056,),
                'the 12,000 training clips', flip=True,
                label_names=tuple(_FASHION[c] for c in (0, 1, 7, 8, 9)), modality='video'),
    # Debian's fortune files as UTF-8 bytes (convjax/data/text.py). Byte codes pass through
    # normalisation unchanged: (x / 255 - 0) / (1 / 255) = x; the models round them back.
    DatasetInfo('fortunes_language', 12, (256, 1), (0.0,), (1 / 255,),
                'byte codes, not normalised', flip=False, modality='text',
                label_names=('en', 'de', 'es', 'it', 'pl', 'ru', 'cs', 'zh', 'eo', 'pt-BR', 'bg',
                             'ga')),
    DatasetInfo('fortunes_topic', 17, (256, 1), (0.0,), (1 / 255,),
                'byte codes, not normalised', flip=False, modality='text',
                label_names=('art', 'computers', 'cookie', 'definitions', 'fortunes', 'knghtbrd',
                             'linux', 'men-women', 'miscellaneous', 'people', 'platitudes',
                             'politics', 'science', 'songs-poems', 'wisdom', 'work', 'zippy')),
    # TFDS's text datasets, for users with internet: AG News (title and description) and IMDB.
    DatasetInfo('ag_news_subset', 4, (1014, 1), (0.0,), (1 / 255,),
                'byte codes, not normalised', flip=False, modality='text',
                label_names=('World', 'Sports', 'Business', 'Sci/Tech')),
    DatasetInfo('imdb_reviews', 2, (1014, 1), (0.0,), (1 / 255,),
                'byte codes, not normalised', flip=False, modality='text',
                label_names=('negative', 'positive')),
    DatasetInfo('words_language', 14, (32, 1), (0.0,), (1 / 255,),
                'byte codes, not normalised', flip=False, modality='text',
                label_names=('en', 'fr', 'de', 'es', 'it', 'pt', 'nl', 'da', 'sv', 'ca', 'fo', 'gl',
                             'no', 'pl')),
    # Scenes of 1 to 6 Fashion-MNIST items with their boxes (convjax/data/scenes.py).
    DatasetInfo('fashion_mnist_scenes', 10, (128, 128, 1), (0.1100,), (0.2542,),
                'the 12,000 training scenes', flip=True, label_names=_FASHION,
                modality='detection'),
    # Photographs with boxes from TFDS, streamed (convjax/data/detection_streaming.py): VOC 2007's
    # 5,011 trainval images, scored on its 4,952 test images; COCO 2017's 118,287 train images,
    # scored on its 5,000 validation images. TFDS's coco builder imports TensorFlow.
    DatasetInfo('voc/2007', 20, None, IMAGENET_MEAN, IMAGENET_STD,
                "ImageNet's (the backbone's pretraining)", flip=True, streaming=True,
                train_split='train+validation', eval_split='test', label_names=_VOC,
                modality='detection'),
    DatasetInfo('coco/2017', 80, None, IMAGENET_MEAN, IMAGENET_STD,
                "ImageNet's (the backbone's pretraining)", flip=True, streaming=True,
                eval_split='validation', label_names=_COCO, modality='detection'),
]}
NUM_CLASSES = {name: info.num_classes for name, info in CATALOGUE.items()}
DATA_SOURCES = ('auto', 'idx', 'tfds')
# IDX file names shared by MNIST-style datasets; `.gz` versions are read too.
_IDX_FILES = {
    'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
    'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'),
}
# Debian's packages of IDX files, and where they put them.
_DEBIAN_PACKAGES = {'fashion_mnist': 'dataset-fashion-mnist'}
_SYSTEM_IDX_DIRS = {'fashion_mnist': '/usr/share/datasets/fashion-mnist'}


class DatasetNotFoundError(errors.UserError, RuntimeError):
  """The dataset is not on this machine and could not be fetched."""


@dataclasses.dataclass(frozen=True)
class Split:
  """images: uint8 [n, height, width, channels]; labels: int32 [n]; targets: any further
  per-example arrays [n, ...] that batches carry beside them (a detection dataset's 'boxes' and
  'classes', see data/scenes.py; for it, labels count each image's objects)."""
  images: np.ndarray
  labels: np.ndarray
  targets: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)

  def __len__(self) -> int:
    return len(self.labels)


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A small dataset in host memory: train and test splits, and its catalogue entry."""
  info: DatasetInfo
  train: Split
  test: Split

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.train.images.shape[1:])


@dataclasses.dataclass(frozen=True)
class StreamingDataset:
  """A large dataset on disk: random-access sources whose items are {'image': uint8 [h, w, c],
  'label': int}, with h and w varying from image to image."""
  info: DatasetInfo
  train: Sequence[dict[str, Any]]
  test: Sequence[dict[str, Any]]


def list_datasets() -> list[str]:
  return sorted(CATALOGUE)


def label_names(name: str) -> tuple[str, ...]:
  """Class names of a catalogue dataset, or the class indices as strings where it has none."""
  info = get_info(name)
  return info.label_names or tuple(str(i) for i in range(info.num_classes))


def get_info(name: str) -> DatasetInfo:
  if name not in CATALOGUE:
    raise errors.InvalidValueError(
        f"unknown dataset '{name}'; valid datasets are: {', '.join(list_datasets())}")
  return CATALOGUE[name]


def load(name: str, data_dir: str | None = None, source: str = 'auto', download: bool = False,
         image_size: int | None = None, split: str = 'default') -> Dataset:
  """Loads a small dataset into host memory.

  Args:
    name: a catalogue name whose entry has streaming=False.
    data_dir: a directory holding IDX files, or TFDS's data_dir.
    source: for IDX datasets, 'idx' (local files only), 'tfds', or 'auto' (IDX files when found,
      else TFDS).
    download: let TFDS download and prepare a missing dataset (needs internet and TensorFlow).
    image_size: when set, resize both splits once to [image_size, image_size] (bilinear).
    split: one of the entry's `splits` ('default' is its first).
  """
  info = get_info(name)
  split = check_split(info, split)
  if info.streaming:
    raise errors.InvalidValueError(
        f"dataset '{name}' is too large for memory; open it with data.open_streaming")
  if source not in DATA_SOURCES:
    raise errors.InvalidValueError(
        f"unknown data_source '{source}'; valid sources are: {', '.join(DATA_SOURCES)}")
  if info.modality != 'image':
    if image_size:
      raise errors.InvalidValueError(f"image_size resizes images; '{name}' holds {info.modality}")
    return _load_other_modality(info, data_dir, source, download, split)
  if name == 'digits':
    train, test = _load_digits()
  elif info.idx and source != 'tfds' and (idx_dir := _find_idx_dir(name, data_dir)):
    train, test = (_read_idx_split(idx_dir, split) for split in ('train', 'test'))
  elif info.idx and source == 'idx':
    raise DatasetNotFoundError(_how_to_get(info, [], data_dir))
  else:
    sources = _tfds_sources(info, data_dir, download)
    train, test = (_split_from_source(s) for s in sources)
  if image_size:
    train, test = _resize(train, image_size), _resize(test, image_size)
  return Dataset(info, train, test)


def open_streaming(name: str, data_dir: str | None = None, download: bool = False,
                   manual_dir: str | None = None) -> StreamingDataset:
  """Opens a large dataset's train and evaluation splits as TFDS random-access sources.

  manual_dir: where ImageNet's manually downloaded archives are, for TFDS to prepare it from.
  """
  info = get_info(name)
  if not info.streaming:
    raise errors.InvalidValueError(f"dataset '{name}' fits in memory; load it with data.load")
  train, test = _tfds_sources(info, data_dir, download, manual_dir)
  return StreamingDataset(info, train, test)


def check_split(info: DatasetInfo, split: str) -> str:
  """The split's name, 'default' resolved to the entry's first; raises InvalidValueError naming
  the valid ones for a split the dataset does not have."""
  split = info.splits[0] if split == 'default' else split
  if split in info.splits or (info.name == 'spoken_digit' and split.startswith('speaker:')):
    return split
  extra = ', speaker:NAME (hold out one speaker)' if info.name == 'spoken_digit' else ''
  raise errors.InvalidValueError(f"dataset '{info.name}' has no split '{split}'; valid splits "
                                 f"are: default, {', '.join(info.splits)}{extra}")


def _load_other_modality(info: DatasetInfo, data_dir, source, download, split) -> Dataset:
  """Audio read by convjax/data/speech.py, video made by convjax/data/video.py, text read by
  convjax/data/text.py, scenes made by convjax/data/scenes.py."""
  # Imported here: each builds on this module's Split and Dataset.
  if info.modality == 'detection':
    from convjax.data import scenes
    return scenes.load_fashion_mnist_scenes(info, data_dir, source, download)
  if info.modality == 'video':
    from convjax.data import video
    return video.load_moving_fashion_mnist(info, data_dir, source, download)
  if info.modality == 'text':
    from convjax.data import text
    if info.name in text.TFDS_TEXT:
      return text.load_tfds_text(info, data_dir, download)
    return text.load_fortunes(info, data_dir)
  from convjax.data import speech
  return speech.load_spoken_digit(info, data_dir, source, download, split)


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


def _idx_candidates(name: str, data_dir: str | None) -> list[str]:
  candidates = []
  if data_dir:
    candidates += [data_dir, os.path.join(data_dir, name), os.path.join(data_dir, name.replace('_', '-'))]
  if name in _SYSTEM_IDX_DIRS:
    candidates.append(_SYSTEM_IDX_DIRS[name])
  return list(dict.fromkeys(candidates))  # 'mnist' and 'mnist'.replace('_', '-') are one folder.


def _find_idx_dir(name: str, data_dir: str | None) -> str | None:
  for directory in _idx_candidates(name, data_dir):
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
    raise errors.InvalidValueError(f'{path} is not an IDX file of unsigned bytes')
  shape = tuple(int.from_bytes(content[4 + 4 * i: 8 + 4 * i], 'big') for i in range(rank))
  return np.frombuffer(content, np.uint8, offset=4 + 4 * rank).reshape(shape)


def tfds_source(info: DatasetInfo, split: str, data_dir, download: bool) -> Sequence:
  """One TFDS split as an array_record data source; see `_tfds_sources`."""
  return _tfds_sources(info, data_dir, download, splits=(split,))[0]


def _tfds_sources(info: DatasetInfo, data_dir, download, manual_dir=None,
                  splits: Sequence[str] | None = None) -> list[Sequence]:
  """The train and evaluation splits (or `splits`) as TFDS array_record data sources (no
  TensorFlow needed).

  Without `download`, a dataset that none of TFDS's folders holds is reported at once, without
  asking TFDS. With it, the download hosts are checked first, so a machine without internet hears
  so in seconds instead of after TFDS's minutes of retries; whatever a failed download wrote is
  removed again.
  """
  import tensorflow_datasets as tfds  # Imported here: slow to import, and only this path needs it.
  from tensorflow_datasets.core.utils import file_utils
  folders = [str(d) for d in file_utils.list_data_dirs(data_dir)]
  if not download and not _tfds_mocked(tfds) and not _tfds_prepared(info.name, folders):
    raise DatasetNotFoundError(_how_to_get(info, folders, data_dir))
  if download:
    _check_download_hosts(info, tfds, folders)
  prepare = {}
  if manual_dir:
    prepare['download_config'] = tfds.download.DownloadConfig(manual_dir=manual_dir)
  existing = _tfds_entries(info.name, folders)
  try:
    return [tfds.data_source(info.name, split=split, data_dir=data_dir, download=download,
                             download_and_prepare_kwargs=prepare)
            for split in splits or (info.train_split, info.eval_split)]
  except Exception as e:  # TFDS raises many types: not found, no network, no TensorFlow.
    _remove_new_entries(info.name, folders, existing)
    raise DatasetNotFoundError(f'{_how_to_get(info, folders, data_dir, download)} (TFDS said: '
                               f'{str(e).strip().splitlines()[0]})') from e


def _tfds_mocked(tfds) -> bool:
  """Under tfds.testing.mock_data, which serves data that no folder holds."""
  # mock_data patches the builders' download_and_prepare whatever reader a test supplies.
  prepare = tfds.core.dataset_builder.DatasetBuilder.download_and_prepare
  return prepare.__module__.startswith('tensorflow_datasets.testing')


def _tfds_prepared(name: str, folders: list[str]) -> bool:
  """Whether a folder holds a prepared version: NAME/[CONFIG/]VERSION/dataset_info.json."""
  patterns = ('*/dataset_info.json', '*/*/dataset_info.json')
  return any(glob.glob(os.path.join(folder, name, p)) for folder in folders for p in patterns)


def _check_download_hosts(info: DatasetInfo, tfds, folders: list[str],
                          timeout: float = 5.0) -> None:
  """Raises DatasetNotFoundError naming the first download host that cannot be reached."""
  urls = tfds.builder_cls(info.name).url_infos or {}  # Empty for manually downloaded data.
  for host in sorted({urllib.parse.urlparse(url).hostname for url in urls}):
    try:
      socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as e:
      raise DatasetNotFoundError(
          f"cannot download dataset '{info.name}': {host} cannot be reached from this machine "
          f"({e.strerror or e}); it is not prepared in {', '.join(folders)} either; prepare it "
          'with TFDS on a machine with internet and copy its directory into --config.data_dir'
      ) from e


def _tfds_entries(name: str, folders: list[str]) -> set[str]:
  """What TFDS may write to on a download: the folders, their downloads/ and NAME/ entries."""
  found = set()
  for folder in folders:
    for parent in (folder, os.path.join(folder, 'downloads'), os.path.join(folder, name)):
      if os.path.isdir(parent):
        found.add(parent)
        found.update(os.path.join(parent, entry) for entry in os.listdir(parent))
  return found


def _remove_new_entries(name: str, folders: list[str], existing: set[str]) -> None:
  """Deletes what a failed download created, deepest first; nothing that existed before."""
  for path in sorted(_tfds_entries(name, folders) - existing, key=len, reverse=True):
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
      os.remove(path)


def _split_from_source(source) -> Split:
  examples = [source[i] for i in range(len(source))]
  images = np.stack([np.asarray(ex['image'], np.uint8) for ex in examples])
  labels = np.array([ex['label'] for ex in examples], np.int32)
  return Split(images.reshape(images.shape[:3] + (-1,)), labels)


def _how_to_get(info: DatasetInfo, folders: list[str], data_dir: str | None = None,
                download: bool = False) -> str:
  """Where the dataset was looked for (TFDS's `folders`, and IDX folders from `data_dir`), and
  the ways to get it that remain."""
  name, where = info.name, ', '.join(folders)
  copy = 'prepare it with TFDS on a machine with internet and copy its directory into --config.data_dir'
  if name == 'imagenet2012':
    return (f"dataset 'imagenet2012' is not prepared in {where}; ImageNet cannot be downloaded "
            'automatically: download ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from '
            'image-net.org into a directory, pass it as --config.manual_dir together with '
            "--config.download=True so TFDS prepares it (needs `pip install tensorflow`), or "
            'copy an already prepared TFDS directory into --config.data_dir')
  if download:
    tfds_ways = f'TFDS could not download and prepare it (preparing needs `pip install tensorflow`); {copy}'
  else:
    tfds_ways = ('with internet, pass --config.download=True so TFDS downloads and prepares it '
                 f'(preparing needs `pip install tensorflow`); or {copy}')
  if not info.idx:
    return f"dataset '{name}' is not prepared in TFDS's folders ({where}); {tfds_ways}"
  apt = (f'on Debian run `apt-get install {_DEBIAN_PACKAGES[name]}`, which puts its IDX files in '
         '/usr/share/datasets; or ') if name in _DEBIAN_PACKAGES else ''
  candidates = _idx_candidates(name, data_dir)
  idx_where = (f"no IDX files in {', '.join(candidates)}" if candidates
               else 'no IDX files (no --config.data_dir was given)')
  tfds_where = f" and is not prepared in TFDS's folders ({where})" if folders else ''
  return (f"dataset '{name}' has {idx_where}{tfds_where}; "
          f'{apt}put the four IDX files (train-images-idx3-ubyte.gz ...) in --config.data_dir; '
          f'or {tfds_ways}')


def _resize(split: Split, size: int) -> Split:
  images = jnp.asarray(split.images, jnp.float32)
  shape = (images.shape[0], size, size, images.shape[3])
  resized = jax.image.resize(images, shape, 'bilinear')
  return Split(np.asarray(jnp.clip(jnp.round(resized), 0, 255), np.uint8), split.labels)


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """Per-channel mean and std, in `unit_scale` units, of uint8 images [n, h, w, c] (or of any
  examples [n, ..., c], such as int16 audio)."""
  pixels = images.reshape(-1, images.shape[-1]).astype(np.float64) * unit_scale(images.dtype)
  return tuple(pixels.mean(0).tolist()), tuple(pixels.std(0).tolist())


def unit_scale(dtype) -> float:
  """What one unit of a stored example is worth in [0, 1] (uint8 pixels) or [-1, 1] (int16
  samples) units."""
  return 1 / 32768 if jnp.dtype(dtype) == jnp.int16 else 1 / 255


def normalize(images: jnp.ndarray, mean, std, dtype=jnp.float32) -> jnp.ndarray:
  """uint8 [..., channels] -> (x / 255 - mean) / std in `dtype`; int16 audio likewise with
  x / 32768. Runs on the device, inside jit."""
  mean, std = jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32)
  scaled = images.astype(jnp.float32) * unit_scale(images.dtype)
  return ((scaled - mean) / std).astype(dtype)

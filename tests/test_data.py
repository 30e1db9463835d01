import gzip
import os
from unittest import mock

import numpy as np
import pytest
import tensorflow_datasets as tfds

from convjax.data import datasets


def write_idx(path, array):
  header = bytes([0, 0, 0x08, array.ndim]) + b''.join(d.to_bytes(4, 'big') for d in array.shape)
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'wb') as f:
    f.write(header + array.astype(np.uint8).tobytes())


def write_idx_dataset(directory, num_train=30, num_test=12, gz=True):
  rng = np.random.default_rng(0)
  suffix = '.gz' if gz else ''
  arrays = {}
  for split, n in (('train', num_train), ('test', num_test)):
    images_name, labels_name = datasets._IDX_FILES[split]
    arrays[split] = (rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n))
    write_idx(os.path.join(directory, images_name + suffix), arrays[split][0])
    write_idx(os.path.join(directory, labels_name + suffix), arrays[split][1])
  return arrays


@pytest.fixture
def no_system_idx(monkeypatch):
  """Hide /usr/share/datasets so a test sees only what it put in data_dir."""
  monkeypatch.setattr(datasets, '_SYSTEM_IDX_DIRS', {})


@pytest.mark.parametrize('name', ['mnist', 'fashion_mnist', 'kmnist'])
@pytest.mark.parametrize('gz', [True, False])
def test_reads_local_idx_files(tmp_path, no_system_idx, name, gz):
  arrays = write_idx_dataset(str(tmp_path), gz=gz)
  dataset = datasets.load(name, data_dir=str(tmp_path), source='idx')
  np.testing.assert_array_equal(dataset.train.images[..., 0], arrays['train'][0])
  np.testing.assert_array_equal(dataset.test.labels, arrays['test'][1])
  assert dataset.train.images.dtype == np.uint8 and dataset.train.labels.dtype == np.int32
  assert dataset.image_shape == (28, 28, 1) and dataset.info.num_classes == 10


@pytest.mark.parametrize('name', ['fashion_mnist', 'kmnist'])
def test_missing_idx_dataset_says_how_to_get_it(tmp_path, no_system_idx, name):
  apt = 'apt-get install dataset-fashion-mnist.*' if name == 'fashion_mnist' else ''
  with pytest.raises(datasets.DatasetNotFoundError, match=f'{apt}IDX files.*data_dir.*download=True'):
    datasets.load(name, data_dir=str(tmp_path), source='idx')
  with pytest.raises(datasets.DatasetNotFoundError, match='download=True'):
    datasets.load(name, data_dir=str(tmp_path), source='auto', download=False)


def test_missing_tfds_dataset_says_how_to_get_it(tmp_path):
  with pytest.raises(datasets.DatasetNotFoundError,
                     match=f"'cifar100' is not prepared in TFDS's folders \\({tmp_path}\\);.*download=True"):
    datasets.load('cifar100', data_dir=str(tmp_path))
  with pytest.raises(datasets.DatasetNotFoundError, match='ILSVRC2012_img_train.tar.*manual_dir'):
    datasets.open_streaming('imagenet2012', data_dir=str(tmp_path))


# TFDS's spoken_digit builder imports TensorFlow to decode WAV files, which convjax does not
# install; tests read FSDD's own files instead (tests/test_speech.py).
IN_MEMORY = [name for name, info in datasets.CATALOGUE.items()
             if not info.streaming and name != 'digits' and info.modality == 'image']


@pytest.mark.parametrize('name', IN_MEMORY)
def test_every_in_memory_dataset_loads_through_tfds(name):
  info = datasets.CATALOGUE[name]
  with tfds.testing.mock_data(num_examples=6):
    dataset = datasets.load(name, source='tfds')
  assert dataset.train.images.shape == (6,) + info.image_shape
  assert dataset.test.images.shape == (6,) + info.image_shape
  assert dataset.train.images.dtype == np.uint8 and dataset.train.labels.dtype == np.int32
  assert set(dataset.train.labels) <= set(range(info.num_classes))
  assert len(info.mean) == len(info.std) == info.image_shape[-1]


@pytest.mark.parametrize('name', ['imagenette', 'imagenet2012'])
def test_streamed_datasets_open_through_tfds(name):
  with tfds.testing.mock_data(num_examples=5):
    dataset = datasets.open_streaming(name, manual_dir='/nonexistent' if name == 'imagenet2012' else None)
    example = dataset.test[4]
  assert len(dataset.train) == len(dataset.test) == 5
  assert example['image'].dtype == np.uint8 and example['image'].shape[2] == 3
  with pytest.raises(ValueError, match='too large for memory'):
    datasets.load(name)


def test_catalogue_names_match_the_issue_and_tfds():
  assert datasets.list_datasets() == [
      'ag_news_subset', 'cifar10', 'cifar100', 'coco/2017', 'digits', 'fashion_mnist',
      'fashion_mnist_scenes',
      'fortunes_language',
      'fortunes_topic', 'imagenet2012', 'imagenette', 'imdb_reviews', 'kmnist', 'mnist',
      'moving_fashion_mnist', 'spoken_digit', 'svhn_cropped', 'voc/2007', 'words_language']
  assert datasets.NUM_CLASSES['cifar100'] == 100 and datasets.NUM_CLASSES['imagenet2012'] == 1000


def test_digits_statistics_match_the_catalogue():
  dataset = datasets.load('digits')
  mean, std = datasets.channel_stats(dataset.train.images)
  np.testing.assert_allclose(mean, dataset.info.mean, atol=5e-5)
  np.testing.assert_allclose(std, dataset.info.std, atol=5e-5)


@pytest.mark.skipif(not os.path.isdir(datasets._SYSTEM_IDX_DIRS['fashion_mnist']),
                    reason='needs Debian package dataset-fashion-mnist')
@pytest.mark.slow  # Reads all 70,000 images.
def test_fashion_mnist_statistics_match_the_catalogue():
  dataset = datasets.load('fashion_mnist', source='idx')
  assert (len(dataset.train), len(dataset.test)) == (60000, 10000)
  mean, std = datasets.channel_stats(dataset.train.images)
  np.testing.assert_allclose(mean, dataset.info.mean, atol=5e-5)
  np.testing.assert_allclose(std, dataset.info.std, atol=5e-5)


def test_digits_split_is_deterministic_and_disjoint():
  first, second = datasets.load('digits'), datasets.load('digits')
  assert (len(first.train), len(first.test)) == (1438, 359)
  np.testing.assert_array_equal(first.test.images, second.test.images)
  train_rows = {row.tobytes() for row in first.train.images}
  test_rows = [row.tobytes() for row in first.test.images]
  assert sum(row in train_rows for row in test_rows) < 5  # Only true duplicate drawings.
  assert first.train.images.max() == 255


def test_resize_changes_shape_once():
  dataset = datasets.load('digits', image_size=28)
  assert dataset.image_shape == (28, 28, 1)


def test_unknown_dataset_lists_valid_names():
  with pytest.raises(ValueError, match="unknown dataset 'cifar'.*cifar10, cifar100, coco/2017, digits"):
    datasets.load('cifar')


def test_normalize_uses_mean_and_std():
  images = np.array([[[[0]], [[255]]]], np.uint8)
  out = np.asarray(datasets.normalize(images, mean=(0.5,), std=(0.25,)))
  np.testing.assert_allclose(out.ravel(), [-2.0, 2.0])


def test_a_download_without_network_is_refused_at_once_and_names_the_host(tmp_path, monkeypatch):
  def unreachable(address, timeout):
    assert timeout <= 5
    raise OSError(101, 'Network is unreachable')
  monkeypatch.setattr(datasets.socket, 'create_connection', unreachable)
  with pytest.raises(datasets.DatasetNotFoundError) as refused:
    datasets.load('cifar10', data_dir=str(tmp_path), download=True)
  message = str(refused.value)
  assert 'www.cs.toronto.edu cannot be reached' in message and str(tmp_path) in message
  assert 'download=True' not in message and 'data_dir=None' not in message
  assert os.listdir(tmp_path) == []


def test_a_failed_download_removes_what_it_wrote_and_keeps_the_rest(tmp_path, monkeypatch):
  import tensorflow_datasets as tfds
  (tmp_path / 'downloads').mkdir()
  (tmp_path / 'downloads' / 'earlier.tar').write_text('kept')
  (tmp_path / 'mnist').mkdir()
  def half_download(name, split, data_dir, download, download_and_prepare_kwargs):
    (tmp_path / 'downloads' / 'cifar-10-binary.tar.gz.tmp').write_text('half')
    (tmp_path / 'cifar10' / '3.0.2.incomplete').mkdir(parents=True)
    raise ConnectionError('connection reset')
  monkeypatch.setattr(datasets.socket, 'create_connection', lambda *a, **k: mock.MagicMock())
  monkeypatch.setattr(tfds, 'data_source', half_download)
  with pytest.raises(datasets.DatasetNotFoundError, match='TFDS could not download.*connection reset'):
    datasets.load('cifar10', data_dir=str(tmp_path), download=True)
  assert sorted(os.listdir(tmp_path)) == ['downloads', 'mnist']
  assert os.listdir(tmp_path / 'downloads') == ['earlier.tar']

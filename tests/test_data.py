import gzip
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from convjax import data


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
    images_name, labels_name = data._IDX_FILES[split]
    arrays[split] = (rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n))
    write_idx(os.path.join(directory, images_name + suffix), arrays[split][0])
    write_idx(os.path.join(directory, labels_name + suffix), arrays[split][1])
  return arrays


@pytest.fixture
def no_system_idx(monkeypatch):
  """Hide /usr/share/datasets so a test sees only what it put in data_dir."""
  monkeypatch.setattr(data, '_SYSTEM_IDX_DIRS', {})


@pytest.mark.parametrize('gz', [True, False])
def test_reads_local_idx_files(tmp_path, no_system_idx, gz):
  arrays = write_idx_dataset(str(tmp_path), gz=gz)
  dataset = data.load('fashion_mnist', data_dir=str(tmp_path), source='idx')
  np.testing.assert_array_equal(dataset.train.images[..., 0], arrays['train'][0])
  np.testing.assert_array_equal(dataset.test.labels, arrays['test'][1])
  assert dataset.train.images.dtype == np.uint8 and dataset.train.labels.dtype == np.int32
  assert dataset.image_shape == (28, 28, 1) and dataset.num_classes == 10
  expected_mean = arrays['train'][0].mean() / 255
  np.testing.assert_allclose(dataset.mean, [expected_mean])


def test_missing_dataset_says_how_to_get_it(tmp_path, no_system_idx):
  with pytest.raises(data.DatasetNotFoundError, match='apt-get install dataset-fashion-mnist.*data_dir.*download=True'):
    data.load('fashion_mnist', data_dir=str(tmp_path), source='idx')
  with pytest.raises(data.DatasetNotFoundError, match='apt-get install'):
    data.load('fashion_mnist', data_dir=str(tmp_path), source='auto', download=False)


def test_tfds_path_reads_every_example():
  with tfds.testing.mock_data(num_examples=20):
    dataset = data.load('fashion_mnist', source='tfds')
  assert dataset.train.images.shape == (20, 28, 28, 1)
  assert dataset.test.images.shape == (20, 28, 28, 1)
  assert dataset.train.images.dtype == np.uint8
  assert set(dataset.train.labels) <= set(range(10))


def test_digits_split_is_deterministic_and_disjoint():
  first, second = data.load('digits'), data.load('digits')
  assert (len(first.train), len(first.test)) == (1438, 359)
  np.testing.assert_array_equal(first.test.images, second.test.images)
  train_rows = {row.tobytes() for row in first.train.images}
  test_rows = [row.tobytes() for row in first.test.images]
  assert sum(row in train_rows for row in test_rows) < 5  # Only true duplicate drawings.
  assert first.train.images.max() == 255


def test_resize_changes_shape_once():
  dataset = data.load('digits', image_size=28)
  assert dataset.image_shape == (28, 28, 1)


def test_unknown_dataset_lists_valid_names():
  with pytest.raises(ValueError, match="unknown dataset 'cifar'.*digits, fashion_mnist"):
    data.load('cifar')


def test_normalize_uses_mean_and_std():
  images = np.array([[[[0]], [[255]]]], np.uint8)
  out = np.asarray(data.normalize(images, mean=(0.5,), std=(0.25,)))
  np.testing.assert_allclose(out.ravel(), [-2.0, 2.0])


def make_split(n):
  return data.Split(np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1), np.arange(n, dtype=np.int32))


def test_train_batches_are_a_function_of_seed_and_step():
  split = make_split(50)
  epoch = [data.train_batch(split, 10, seed=3, step=s)['label'] for s in range(5)]
  assert sorted(np.concatenate(epoch)) == list(range(50))  # An epoch is a permutation.
  again = data.train_batch(split, 10, seed=3, step=2)['label']
  np.testing.assert_array_equal(again, epoch[2])
  next_epoch = data.train_batch(split, 10, seed=3, step=5)['label']
  assert not np.array_equal(next_epoch, epoch[0])
  other_seed = data.train_batch(split, 10, seed=4, step=0)['label']
  assert not np.array_equal(other_seed, epoch[0])


def test_processes_take_disjoint_slices_of_the_global_batch():
  split = make_split(48)
  whole = data.train_batch(split, 12, seed=0, step=1)['label']
  parts = [data.train_batch(split, 12, 0, 1, process_index=p, process_count=3)['label']
           for p in range(3)]
  np.testing.assert_array_equal(np.concatenate(parts), whole)


@pytest.mark.parametrize('n,batch_size,process_count', [(10, 4, 1), (10, 6, 2), (7, 8, 1), (9, 3, 3)])
def test_eval_batches_count_every_example_exactly_once(n, batch_size, process_count):
  seen = []
  for p in range(process_count):
    for batch in data.eval_batches(make_split(n), batch_size, p, process_count):
      assert len(batch['label']) == batch_size // process_count
      seen += list(batch['label'][batch['mask'] > 0])
  assert sorted(seen) == list(range(n))

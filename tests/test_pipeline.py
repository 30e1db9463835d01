"""Batches: a pure function of (seed, step), the same on any device count, every test example once."""
import json

import jax
import ml_collections
import numpy as np
import pytest

from configs import default
from convjax import parallel
from convjax.data import augment, datasets, pipeline, sampling
from convjax.training import inputs
from tests.conftest import NUM_TEST_DEVICES


def make_dataset(num_train=40, num_test=10, shape=(6, 6, 1)):
  """Image i is filled with i (mod 256), so a batch's pixels say which examples it holds."""
  def split(n, offset):
    images = np.broadcast_to(((np.arange(n) + offset) % 256).astype(np.uint8)[:, None, None, None],
                             (n,) + shape).copy()
    return datasets.Split(images, np.arange(offset, offset + n, dtype=np.int32))
  return datasets.Dataset(datasets.CATALOGUE['fashion_mnist'], split(num_train, 0), split(num_test, 100))


def host(batch):
  """[devices, per_device, ...] device arrays -> [global, ...] numpy."""
  return jax.tree.map(lambda x: np.asarray(x).reshape((-1,) + x.shape[2:]), batch)


def make_pipeline(num_devices, augmentation=augment.Augmentation(), batch_size=8,
                  eval_batch_size=4, dataset=None):
  dp = parallel.DataParallel(num_devices)
  return pipeline.InMemoryPipeline(dataset or make_dataset(), dp, batch_size, eval_batch_size,
                                   seed=5, augmentation=augmentation)


def test_an_epoch_is_a_permutation_and_batches_depend_only_on_seed_and_step():
  epoch = np.concatenate([sampling.train_indices(50, 10, seed=3, step=s) for s in range(5)])
  assert sorted(epoch) == list(range(50))
  np.testing.assert_array_equal(sampling.train_indices(50, 10, 3, 2), epoch[20:30])
  assert not np.array_equal(sampling.train_indices(50, 10, 3, 5), epoch[:10])  # Next epoch.
  assert not np.array_equal(sampling.train_indices(50, 10, 4, 0), epoch[:10])  # Other seed.


def test_parts_of_a_global_batch_tile_it():
  whole = sampling.train_indices(48, 12, seed=0, step=1)
  parts = [sampling.train_indices(48, 12, 0, 1, first=4 * p, count=4) for p in range(3)]
  np.testing.assert_array_equal(np.concatenate(parts), whole)


@pytest.mark.parametrize('num_devices', [1, 2, NUM_TEST_DEVICES])
def test_device_batches_hold_the_sampled_examples(num_devices):
  source = make_pipeline(num_devices)
  for step, batch in zip(range(12), source.train_batches(0, 12)):
    batch = host(batch)
    expected = sampling.train_indices(40, 8, seed=5, step=step)
    np.testing.assert_array_equal(batch['label'], expected)
    np.testing.assert_array_equal(batch['image'][:, 0, 0, 0], expected)
    assert batch['image'].dtype == np.uint8 and batch['image'].shape == (8, 6, 6, 1)


def test_resuming_continues_at_the_exact_example_with_the_same_augmentation():
  source = make_pipeline(2, augment.Augmentation(crop_padding=2, flip=True, cutout=3))
  straight = [host(b) for b in source.train_batches(0, 9)]
  resumed = [host(b) for b in source.train_batches(4, 9)]  # Crosses the epoch boundary at 5.
  for a, b in zip(straight[4:], resumed):
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['label'], b['label'])
  first_epoch = np.concatenate([b['label'] for b in straight[:5]])
  assert sorted(first_epoch) == list(range(40))  # No repeats, no skips.


def test_augmentation_does_not_depend_on_the_device_count():
  augmentation = augment.Augmentation(crop_padding=2, flip=True, cutout=3)
  dataset = make_dataset(shape=(6, 6, 3))
  dataset = datasets.Dataset(dataset.info, datasets.Split(
      np.random.default_rng(0).integers(0, 256, (40, 6, 6, 3), dtype=np.uint8),
      dataset.train.labels), dataset.test)
  one, four = (make_pipeline(n, augmentation, dataset=dataset) for n in (1, NUM_TEST_DEVICES))
  for a, b in zip(one.train_batches(0, 3), four.train_batches(0, 3)):
    np.testing.assert_array_equal(host(a)['image'], host(b)['image'])
  first = host(next(one.train_batches(0, 1)))
  plain = dataset.train.images[sampling.train_indices(40, 8, 5, 0)]
  assert not np.array_equal(first['image'], plain)  # Augmentation did something.


@pytest.mark.parametrize('num_devices,eval_batch_size', [(1, 3), (2, 4), (NUM_TEST_DEVICES, 4),
                                                         (NUM_TEST_DEVICES, 16)])
def test_evaluation_sees_every_example_exactly_once(num_devices, eval_batch_size):
  source = make_pipeline(num_devices, eval_batch_size=eval_batch_size)
  seen = []
  for batch in source.eval_batches():
    batch = host(batch)
    assert len(batch['label']) == eval_batch_size
    seen += list(batch['label'][batch['mask'] > 0])
  assert sorted(seen) == list(range(100, 110))


@pytest.mark.parametrize('n,batch_size,parts', [(10, 4, 1), (10, 6, 2), (7, 8, 1), (9, 3, 3)])
def test_eval_indices_of_every_part_cover_the_split_once(n, batch_size, parts):
  seen = []
  for batch in range(sampling.num_eval_batches(n, batch_size)):
    for p in range(parts):
      count = batch_size // parts
      indices, mask = sampling.eval_indices(n, batch_size, batch, p * count, count)
      seen += list(indices[mask > 0])
  assert sorted(seen) == list(range(n))


def test_create_picks_the_pipeline_from_the_catalogue(digits_config):
  source = inputs.create_pipeline(digits_config, parallel.DataParallel())
  assert isinstance(source, pipeline.InMemoryPipeline)
  assert source.image_shape == (28, 28, 1) and source.num_train_examples == 1438


def test_the_config_defaults_are_the_augmentation_defaults():
  config = default.get_config()
  assert inputs.augmentation(config) == augment.Augmentation()
  assert not inputs.augmentation(config).enabled


def test_augmentation_takes_every_field_and_makes_lists_tuples():
  # Built from plain data, as trained.load_model builds a workdir's config: sequences stay lists.
  config = ml_collections.ConfigDict(json.loads(default.get_config().to_json()))
  config.augment.update(crop_padding=2, flip=True, cutout=3, random_erasing=0.5,
                        erasing_scale=[0.1, 0.2], erasing_ratio=[0.5, 2.0], randaugment_ops=2,
                        randaugment_magnitude=5.0)
  assert inputs.augmentation(config) == augment.Augmentation(
      crop_padding=2, flip=True, cutout=3, random_erasing=0.5, erasing_scale=(0.1, 0.2),
      erasing_ratio=(0.5, 2.0), randaugment_ops=2, randaugment_magnitude=5.0)

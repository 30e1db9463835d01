"""The ImageNet-size pipeline: crops, determinism, resume, process parts, exactly-once evaluation."""
import numpy as np
import pytest
import tensorflow_datasets as tfds

from convjax import parallel
from convjax.data import datasets, sampling, streaming
from convjax.training import loop


def gradient(height, width):
  """uint8 [h, w, 3] whose red channel is the row and green the column: crops are legible."""
  rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing='ij')
  return np.stack([rows, cols, np.full_like(rows, 9)], -1).astype(np.uint8)


def fake_dataset(num_train=20, num_test=7):
  rng = np.random.default_rng(0)
  def split(n, offset):
    return [{'image': rng.integers(0, 256, (int(rng.integers(20, 60)), int(rng.integers(20, 60)),
                                            3), dtype=np.uint8), 'label': i + offset}
            for i in range(n)]
  return datasets.StreamingDataset(datasets.CATALOGUE['imagenette'], split(num_train, 0), split(num_test, 100))


def make_pipeline(num_devices=2, num_workers=3, dataset=None, **kwargs):
  return streaming.StreamingPipeline(dataset or fake_dataset(), parallel.DataParallel(num_devices),
                                     batch_size=4, eval_batch_size=4, seed=1, image_size=16,
                                     num_workers=num_workers, **kwargs)


def test_centre_crop_resizes_the_short_side_then_takes_the_middle():
  out = streaming.centre_crop(gradient(40, 80), size=14, crop_ratio=0.875)  # Short side -> 16.
  assert out.shape == (14, 14, 3) and out.dtype == np.uint8
  # 40x80 -> 16x32: the middle 14 columns of 32 start at 9 (of 80 source columns: 22.5 + ...).
  assert abs(int(out[7, 7, 0]) - 20) <= 2 and abs(int(out[7, 7, 1]) - 40) <= 3


def test_random_resized_crop_covers_a_plausible_region():
  rng = np.random.default_rng(0)
  for _ in range(20):
    out = streaming.random_resized_crop(gradient(50, 70), rng, size=12, min_scale=0.08)
    assert out.shape == (12, 12, 3) and out.dtype == np.uint8
    assert out[..., 0].max() < 50 and out[..., 1].max() < 70
    assert np.all(np.diff(out[..., 0].astype(int), axis=0) >= 0)  # Not flipped vertically.
  whole = streaming.random_resized_crop(gradient(50, 70), rng, size=12, min_scale=1.0)
  assert whole[..., 0].max() - whole[..., 0].min() > 35  # min_scale=1 keeps (almost) everything.


def test_greyscale_images_become_rgb():
  assert streaming.rgb(np.zeros((5, 6, 1), np.uint8)).shape == (5, 6, 3)


def test_batches_are_a_function_of_seed_and_step_not_of_threads():
  one_thread = [b for b in make_pipeline(num_workers=1).train_batches(0, 7)]
  many = make_pipeline(num_workers=4)
  resumed = list(many.train_batches(3, 7))
  for a, b in zip(one_thread[3:], resumed):
    np.testing.assert_array_equal(np.asarray(a['image']), np.asarray(b['image']))
  labels = np.concatenate([np.asarray(b['label']).ravel() for b in one_thread[:5]])
  assert sorted(labels) == list(range(20))  # One epoch: no repeats, no skips.
  assert one_thread[0]['image'].shape == (2, 2, 16, 16, 3)  # [devices, per device, h, w, c].


def test_each_process_reads_only_its_part(monkeypatch):
  source = make_pipeline(num_devices=1)
  whole = source.host_train_batch(2)
  monkeypatch.setattr(parallel, 'process_count', lambda: 2)
  parts = []
  for p in range(2):
    monkeypatch.setattr(parallel, 'process_index', lambda p=p: p)
    parts.append(source.host_train_batch(2))
  np.testing.assert_array_equal(np.concatenate([p['image'] for p in parts]), whole['image'])
  np.testing.assert_array_equal(np.concatenate([p['label'] for p in parts]),
                                sampling.train_indices(20, 4, 1, 2))


def test_evaluation_sees_every_example_once_and_is_not_augmented():
  source = make_pipeline()
  seen, batches = [], list(source.eval_batches())
  for batch in batches:
    labels, mask = np.asarray(batch['label']).ravel(), np.asarray(batch['mask']).ravel()
    seen += list(labels[mask > 0])
  assert sorted(seen) == list(range(100, 107))
  again = list(source.eval_batches())
  np.testing.assert_array_equal(np.asarray(again[0]['image']), np.asarray(batches[0]['image']))


def test_flip_can_be_turned_off():
  dataset = fake_dataset()
  flipped = make_pipeline(dataset=dataset, flip=True).host_train_batch(0)['image']
  plain = make_pipeline(dataset=dataset, flip=False).host_train_batch(0)['image']
  same = [np.array_equal(a, b) for a, b in zip(flipped, plain)]
  mirrored = [np.array_equal(a[:, ::-1], b) for a, b in zip(flipped, plain)]
  assert all(s or m for s, m in zip(same, mirrored))


@pytest.mark.slow  # A training run on mock TFDS data.
@pytest.mark.parametrize('name', ['imagenette', 'imagenet2012'])
def test_training_runs_on_mock_tfds_data(tmp_path, digits_config, name):
  config = digits_config
  config.dataset, config.image_size, config.model = name, 32, 'lenet5'
  config.batch_size, config.eval_batch_size, config.num_train_steps = 8, 8, 2
  config.augment.flip = True
  with tfds.testing.mock_data(num_examples=12):
    final = loop.train_and_evaluate(config, str(tmp_path)).metrics
  assert final['num_test_examples'] == 12 and np.isfinite(final['test_loss'])


def test_an_abandoned_background_iterator_stops_its_thread():
  import threading
  before = set(threading.enumerate())
  batches = streaming._background(iter(range(1000)), size=2)
  assert next(batches) == 0
  (producer,) = set(threading.enumerate()) - before
  batches.close()  # What happens when a training loop stops early.
  producer.join(timeout=5)
  assert not producer.is_alive()


def test_background_errors_reach_the_consumer():
  def failing():
    yield 1
    raise OSError('disk gone')
  batches = streaming._background(failing(), size=2)
  assert next(batches) == 1
  with pytest.raises(OSError, match='disk gone'):
    next(batches)

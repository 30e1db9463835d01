"""How fast the input pipelines deliver batches, against how fast a model consumes them.

  python -m benchmarks.input_pipeline [--dataset=fashion_mnist --model=lenet5 --batch_size=128]
      [--steps=300] [--streaming_images=512] [--output=FILE.json]

Measures, on the machine it runs on:
1. the in-memory pipeline alone (gather, augment, mask on the device), without and with
   augmentation (4-pixel crop, flip, 8-pixel cutout), blocking on every batch;
2. the model's train step alone on a batch already on the device: the consumer to beat;
3. the streaming pipeline (ImageNet-size path) on synthetic 500x375 JPEGs decoded with Pillow,
   as TFDS decodes them, random-resized-cropped to 224x224 on host threads.
Each figure is the median of 5 timed repeats after a warm-up.
"""
import io
import json
import os
import statistics
import time

from absl import flags

from experiments import cli

_DATASET = flags.DEFINE_string('dataset', 'fashion_mnist', 'An in-memory catalogue dataset.')
_MODEL = flags.DEFINE_string('model', 'lenet5', 'The consuming model.')
_BATCH = flags.DEFINE_integer('batch_size', 128, 'Global batch size (the lenet5 config uses 128).')
_STEPS = flags.DEFINE_integer('steps', 300, 'Batches per timed repeat.')
_STREAMING_IMAGES = flags.DEFINE_integer('streaming_images', 512, 'Images per streaming repeat.')
_WORKERS = flags.DEFINE_integer('input_workers', 8, 'Streaming decode threads.')
_OUTPUT = flags.DEFINE_string('output', None, 'Also write the results here as JSON.')
_REPEATS = 5


def _median_rate(run, images_per_run: int) -> float:
  run()  # Warm-up: compilation, caches, thread start.
  seconds = []
  for _ in range(_REPEATS):
    start = time.perf_counter()
    run()
    seconds.append(time.perf_counter() - start)
  return images_per_run / statistics.median(seconds)


def in_memory_rate(dp, dataset, augmentation) -> float:
  from convjax.data import pipeline, sampling
  source = pipeline.InMemoryPipeline(dataset, dp, _BATCH.value, _BATCH.value, 0, augmentation)
  steps = min(_STEPS.value, sampling.steps_per_epoch(len(dataset.train), _BATCH.value))

  def run():
    for batch in source.train_batches(0, steps):
      batch['image'].block_until_ready()
  return _median_rate(run, steps * _BATCH.value)


def train_step_rate(dp, dataset) -> float:
  """The training loop's own step, built from the default config with --model and --batch_size."""
  import jax
  from configs import default
  from convjax.training import builder
  config = default.get_config()
  config.update(model=_MODEL.value, dataset=_DATASET.value, batch_size=_BATCH.value)
  spec = builder.DataSpec(dataset.image_shape, dataset.info.num_classes, dataset.info.mean,
                          dataset.info.std, len(dataset.train))
  run = builder.build(config, dp, spec)
  state = dp.replicate(run.init_state())
  batch = dp.shard({'image': dataset.train.images[:_BATCH.value],
                    'label': dataset.train.labels[:_BATCH.value]})

  def run_steps():
    nonlocal state
    for _ in range(_STEPS.value):
      state, _ = run.p_train_step(state, batch)
    jax.block_until_ready(state)
  return _median_rate(run_steps, _STEPS.value * _BATCH.value)


class _JpegSource:
  """A random-access source of synthetic ImageNet-size JPEGs, decoded on access like TFDS's."""

  def __init__(self, count: int):
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    self._jpegs = []
    for _ in range(16):  # 16 distinct photos-worth of bytes, reused.
      noise = rng.integers(0, 256, (375 // 8, 500 // 8, 3), dtype=np.uint8)
      image = Image.fromarray(noise).resize((500, 375), Image.BICUBIC)  # Smooth, photo-like.
      buffer = io.BytesIO()
      image.save(buffer, 'JPEG', quality=90)
      self._jpegs.append(buffer.getvalue())
    self._count = count

  def __len__(self):
    return self._count

  def __getitem__(self, index):
    import numpy as np
    from PIL import Image
    image = np.asarray(Image.open(io.BytesIO(self._jpegs[index % 16])).convert('RGB'))
    return {'image': image, 'label': index % 10}


def streaming_rate(dp) -> float:
  from convjax.data import datasets, streaming
  count = _STREAMING_IMAGES.value
  dataset = datasets.StreamingDataset(datasets.CATALOGUE['imagenette'], _JpegSource(count), _JpegSource(64))
  batch = 64
  source = streaming.StreamingPipeline(dataset, dp, batch, batch, 0, num_workers=_WORKERS.value)

  def run():
    for images in source.train_batches(0, count // batch):
      images['image'].block_until_ready()
  return _median_rate(run, (count // batch) * batch)


def main(argv):
  del argv
  import jax
  from convjax import parallel
  from convjax.data import augment, datasets
  dp = parallel.DataParallel()
  dataset = datasets.load(_DATASET.value)
  results = {
      'device': f'{jax.devices()[0].device_kind} x {dp.num_devices}',
      'cpu_count': os.cpu_count(),
      'dataset': _DATASET.value, 'model': _MODEL.value, 'batch_size': _BATCH.value,
      'pipeline_images_per_sec': in_memory_rate(dp, dataset, augment.Augmentation()),
      'pipeline_augmented_images_per_sec': in_memory_rate(
          dp, dataset, augment.Augmentation(crop_padding=4, flip=True, cutout=8)),
      'train_step_images_per_sec': train_step_rate(dp, dataset),
      'streaming_images_per_sec': streaming_rate(dp),
      'streaming_input_workers': _WORKERS.value,
  }
  results['ratio'] = results['pipeline_images_per_sec'] / results['train_step_images_per_sec']
  results['augmented_ratio'] = (results['pipeline_augmented_images_per_sec'] /
                                results['train_step_images_per_sec'])
  for key, value in results.items():
    print(f'{key:36s} {value:,.2f}' if isinstance(value, float) else f'{key:36s} {value}')
  if _OUTPUT.value:
    with open(_OUTPUT.value, 'w') as f:
      json.dump(results, f, indent=2)


if __name__ == '__main__':
  cli.run(main)

"""The config's data: its dataset behind the input pipeline that suits it, with its augmentation.

The pipelines themselves (convjax.data) take plain arguments and know no run config; this module
reads the config's fields for them.
"""
import dataclasses

from convjax import parallel
from convjax.data import augment, datasets, pipeline
from convjax.training import config as config_lib


def augmentation(config) -> augment.Augmentation:
  """Returns the in-memory augmentation, each of augment.Augmentation's fields from the config's.

  Field by field, so a field added to Augmentation but not to the config fails here, by name. A
  config built from plain data (JSON) holds lists where the dataclass's fields are tuples.
  """
  def setting(name: str):
    value = config.augment[name]
    return tuple(value) if isinstance(value, list) else value

  return augment.Augmentation(**{field.name: setting(field.name)
                                 for field in dataclasses.fields(augment.Augmentation)})


def create_pipeline(config, dp: parallel.DataParallel) -> pipeline.Pipeline:
  """Returns the config's dataset, loaded or opened, behind the pipeline that suits its size:
  pipeline.InMemoryPipeline for small datasets, streaming.StreamingPipeline for large ones."""
  info = datasets.get_info(config.dataset)
  eval_batch_size = config_lib.eval_batch_size(config, dp.num_devices)
  if eval_batch_size != config.eval_batch_size and parallel.process_index() == 0:
    print(f'evaluating in batches of {eval_batch_size}: eval_batch_size={config.eval_batch_size} '
          f'rounded up to a multiple of the {dp.num_devices} devices', flush=True)
  if info.streaming:
    from convjax.data import streaming  # Imported here: only large datasets need PIL and threads.
    dataset = datasets.open_streaming(config.dataset, config.data_dir, config.download,
                                      config.manual_dir)
    if info.modality == 'detection':
      return _detection_pipeline(config, dataset, dp, eval_batch_size)
    return streaming.StreamingPipeline(
        dataset, dp, config.batch_size, eval_batch_size, config.seed,
        image_size=config.image_size or streaming.DEFAULT_IMAGE_SIZE, flip=config.augment.flip,
        randaugment=(config.augment.randaugment_ops, config.augment.randaugment_magnitude),
        min_crop_scale=config.augment.min_crop_scale, eval_crop_ratio=config.eval_crop_ratio,
        num_workers=config.input_workers, prefetch=config.prefetch_batches)
  dataset = datasets.load(config.dataset, config.data_dir, config.data_source, config.download,
                          config.image_size, config.get('data_split', 'default'))
  return pipeline.InMemoryPipeline(dataset, dp, config.batch_size, eval_batch_size, config.seed,
                                   augmentation(config))


def _detection_pipeline(config, dataset, dp: parallel.DataParallel, eval_batch_size: int):
  """A streamed detection dataset's pipeline (detection_streaming.DetectionStreamingPipeline)."""
  from convjax.data import detection_streaming
  return detection_streaming.DetectionStreamingPipeline(
      dataset, dp, config.batch_size, eval_batch_size, config.seed,
      image_size=config.image_size or detection_streaming.DEFAULT_IMAGE_SIZE,
      flip=config.augment.flip, scale_range=tuple(config.augment.scene_scale),
      max_objects=config.detection.max_objects, num_workers=config.input_workers,
      prefetch=config.prefetch_batches)

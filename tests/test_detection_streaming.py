"""Streamed detection datasets (VOC 2007, COCO 2017 from TFDS): boxes through letterboxing, zoom
and flip, COCO ground truth in the original pixels, and a run on mocked VOC examples."""
import numpy as np
import pytest
import tensorflow_datasets as tfds

from convjax import parallel
from convjax.data import datasets, detection_streaming as ds, scenes
from convjax.training import config as config_lib, finetune, loop

FILL = np.array([124, 116, 104], np.uint8)


def white_rectangle(height=60, width=100, box=(30, 10, 40, 20)):
  """A black RGB image [height, width, 3] holding one white rectangle box (x, y, w, h)."""
  image = np.zeros((height, width, 3), np.uint8)
  x, y, w, h = box
  image[y:y + h, x:x + w] = 255
  return image, np.array([box], np.float32)


def ink_box(image: np.ndarray) -> np.ndarray:
  """The tight (x, y, w, h) box of the pixels brighter than the fill."""
  rows = np.flatnonzero((image[..., 0] > 200).any(1))
  columns = np.flatnonzero((image[..., 0] > 200).any(0))
  return np.array([columns[0], rows[0], columns[-1] + 1 - columns[0], rows[-1] + 1 - rows[0]])


def voc_example(rng: np.random.Generator, label_offset: int = 0) -> dict:
  """An example shaped as TFDS's voc/2007 serves them: an image of its own size and 1 to 3
  objects with (ymin, xmin, ymax, xmax) fractions."""
  height, width = rng.integers(40, 90, size=2)
  n = int(rng.integers(1, 4))
  low = rng.uniform(0.0, 0.5, size=(n, 2))
  high = low + rng.uniform(0.2, 0.5, size=(n, 2))
  return {'image': rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
          'objects': {'bbox': np.concatenate([low, high], 1).astype(np.float32),
                      'label': (rng.integers(0, 20, n) + label_offset) % 20,
                      'is_difficult': np.arange(n) == 2}}


def voc_source(builder, split, **kwargs):
  """tfds.testing.mock_data's reader: a split of consistent VOC-shaped examples."""
  del builder, kwargs
  rng = np.random.default_rng(len(split))
  return [voc_example(rng) for _ in range(12 if 'train' in split else 5)]


def test_tfds_boxes_become_pixel_boxes_and_mismatched_objects_are_one_sentence():
  example = {'image': np.zeros((50, 200, 3), np.uint8),
             'objects': {'bbox': np.array([[0.1, 0.25, 0.5, 0.75]], np.float32),
                         'label': np.array([3]), 'is_crowd': np.array([True])}}
  boxes, classes, ignore = ds.tfds_objects(example)
  np.testing.assert_allclose(boxes, [[50, 5, 100, 20]])
  assert classes.tolist() == [3] and ignore.tolist() == [True]
  example['objects']['label'] = np.array([3, 4])
  with pytest.raises(datasets.DatasetNotFoundError, match='1 boxes, 2 labels'):
    ds.tfds_objects(example)


@pytest.mark.parametrize('seed', range(4))
def test_zoomed_boxes_stay_on_their_objects(seed):
  image, boxes = white_rectangle()
  out, out_boxes, out_classes = ds.zoom_with_boxes(image, boxes, np.array([5]),
                                                   np.random.default_rng(seed), 64, (0.6, 1.4), FILL)
  assert out.shape == (64, 64, 3)
  if len(out_boxes):  # Kept: the box is the visible rectangle's, to a pixel of resampling.
    np.testing.assert_allclose(out_boxes[0], ink_box(out), atol=1.5)
    assert out_classes.tolist() == [5]


def test_objects_mostly_cut_off_are_dropped():
  image, boxes = white_rectangle(box=(0, 0, 20, 20))
  kept = []
  for seed in range(40):
    _, out_boxes, _ = ds.zoom_with_boxes(image, boxes, np.array([1]),
                                         np.random.default_rng(seed), 32, (2.0, 2.0), FILL)
    kept.append(len(out_boxes))
    if out_boxes.size:
      assert out_boxes[0, 2] * out_boxes[0, 3] >= scenes.MIN_VISIBLE * (20 * 0.32 * 2) ** 2 - 1
  assert 0 < sum(kept) < 40  # Some draws cut the rectangle away, some keep it.


def test_letterboxing_maps_boxes_by_one_scale_and_a_flip_mirrors_them():
  image, boxes = white_rectangle(height=60, width=120, box=(30, 10, 40, 20))
  scale = ds.letterbox_scale(60, 120, 96)
  placed = ds.place(image, 96, scale, (0, 0), FILL)
  np.testing.assert_allclose(ink_box(placed), boxes[0] * scale, atol=1)
  assert (placed[60:] == FILL).all()  # The padding, below the 96x48 image.
  mirrored, mirrored_boxes = ds.flip(placed, boxes * scale)
  np.testing.assert_allclose(ink_box(mirrored), mirrored_boxes[0], atol=1)


def test_padding_keeps_the_first_objects():
  boxes, classes = ds.pad_objects(np.ones((3, 4)), np.array([4, 5, 6]), 2)
  assert boxes.shape == (2, 4) and classes.tolist() == [4, 5]
  assert ds.pad_objects(np.ones((1, 4)), np.array([7]), 3)[1].tolist() == [7, -1, -1]


def voc_config(image_size=64):
  from configs import centernet_resnet50_coco
  config = centernet_resnet50_coco.get_config()
  config.dataset, config.model, config.image_size = 'voc/2007', 'resnet18', image_size
  config.model_kwargs.widths, config.model_kwargs.stage_sizes = (8, 8, 16, 16), (1, 1, 1, 1)
  config.detection.pyramid_width = config.detection.head_width = 8
  config.batch_size, config.eval_batch_size, config.num_train_steps = 4, 4, 2
  config.eval_every_steps = config.checkpoint_every_steps = 2
  config.half_precision, config.input_workers = False, 2
  return config


def test_the_pipeline_batches_boxes_and_its_ground_truth_is_in_the_original_pixels():
  config = voc_config()
  with tfds.testing.mock_data(as_data_source_fn=voc_source):
    dataset = datasets.open_streaming('voc/2007')
    pipeline = ds.DetectionStreamingPipeline(dataset, parallel.DataParallel(1), 4, 4, 0,
                                             image_size=64, scale_range=(0.6, 1.3),
                                             max_objects=config.detection.max_objects)
    batch = pipeline.host_train_batch(0)
    evaluation = pipeline.host_eval_batch(0)
    truth, scales = pipeline.detection_truth()
  assert batch['image'].shape == (4, 64, 64, 3) and batch['boxes'].shape == (4, 100, 4)
  real = batch['classes'] >= 0
  assert (batch['label'] == real.sum(1)).all() and (batch['boxes'][~real] == 0).all()
  assert (batch['boxes'][real][:, :2] >= 0).all()
  assert (batch['boxes'][real][:, :2] + batch['boxes'][real][:, 2:] <= 64 + 1e-4).all()
  first = voc_source(None, 'test')[0]
  height, width = first['image'].shape[:2]
  assert truth['images'][0] == {'id': 1, 'height': height, 'width': width}
  assert len(truth['images']) == len(scales) == 5
  assert scales[0] == pytest.approx(64 / max(height, width))
  first_truth = [a for a in truth['annotations'] if a['image_id'] == 1]
  boxes, _, ignore = ds.tfds_objects(first)
  np.testing.assert_allclose([a['bbox'] for a in first_truth], boxes, rtol=1e-6)
  assert [a['iscrowd'] for a in first_truth] == ignore.astype(int).tolist()
  evaluated = evaluation['classes'][0] >= 0
  np.testing.assert_allclose(evaluation['boxes'][0][evaluated] / scales[0], boxes[~ignore],
                             rtol=1e-5)


@pytest.mark.slow  # Compiles a CenterNet's training and evaluation at 64x64.
def test_a_detector_trains_on_streamed_voc_and_is_scored_in_the_original_pixels(tmp_path):
  with tfds.testing.mock_data(as_data_source_fn=voc_source):
    result = loop.train_and_evaluate(voc_config(), str(tmp_path / 'run'))
  assert result.step == 2 and result.metrics['num_test_examples'] == 5
  assert 0 <= result.metrics['test_AP'] <= 1 and 0 <= result.metrics['test_AP50'] <= 1


def test_vocs_class_names_are_tfdss_and_coco_without_tensorflow_is_one_sentence():
  assert (tfds.builder('voc/2007').info.features['objects']['label'].names ==
          list(datasets.get_info('voc/2007').label_names))
  try:
    import tensorflow  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel
  except ImportError:
    with tfds.testing.mock_data(num_examples=2):
      with pytest.raises(datasets.DatasetNotFoundError, match='tensorflow'):
        datasets.open_streaming('coco/2017')


def test_the_coco_config_is_valid_and_names_cocos_80_categories():
  from configs import centernet_resnet50_coco
  config = centernet_resnet50_coco.get_config()
  config_lib.validate(config, 1)
  names = datasets.get_info('coco/2017').label_names
  assert len(names) == 80 and names[0] == 'person' and names[-1] == 'toothbrush'
  assert len(datasets.get_info('voc/2007').label_names) == 20


def test_torchvision_weights_start_a_detectors_backbone_and_nothing_else(tmp_path):
  from safetensors.numpy import save_file
  from convjax.training import builder
  from tests.test_weights import TINY, random_state
  config = voc_config()
  config.model_kwargs = dict(TINY['resnet18'])
  config.init_from = str(tmp_path / 'resnet18.safetensors')
  state = random_state('resnet18', num_classes=1000, **TINY['resnet18'])
  save_file(state, config.init_from)
  fresh = builder.build(config, parallel.DataParallel(1), builder.DataSpec(
      (64, 64, 3), 20, (0.5,) * 3, (0.25,) * 3, 100)).init_variables()
  variables, description = finetune.initial_variables(config, fresh)
  assert description.endswith('(the backbone)')
  np.testing.assert_array_equal(variables['params']['backbone']['stem_conv']['kernel'],
                                state['conv1.weight'].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(variables['batch_stats']['backbone']['stem_norm']['mean'],
                                state['bn1.running_mean'])
  np.testing.assert_array_equal(variables['params']['pyramid']['lateral_0']['kernel'],
                                fresh['params']['pyramid']['lateral_0']['kernel'])

"""Detection: Fashion-MNIST scenes, CenterNet's targets, loss and decoding, the model, and COCO AP
by pycocotools on hand-made cases."""
import functools
import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from convjax import errors, models, parallel
from convjax.data import augment, datasets, pipeline, scenes
from convjax.models import detection as detection_model
from convjax.training import coco, config as config_lib, detection, loop, metrics, steps

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fake_items(count=40, seed=0):
  """uint8 items [count, 28, 28, 1]: a bright rectangle of random extent each, classes 0..9."""
  rng = np.random.default_rng(seed)
  images = np.zeros((count, 28, 28, 1), np.uint8)
  for image in images:
    y0, x0 = rng.integers(0, 8, size=2)
    y1, x1 = rng.integers(20, 28, size=2)
    image[y0:y1, x0:x1] = 200
  return images, np.arange(count, dtype=np.int32) % 10


def test_scenes_are_deterministic_and_scene_i_does_not_depend_on_the_count():
  images, labels = fake_items()
  a = scenes.make_scenes(images, labels, 5, seed=3)
  b = scenes.make_scenes(images, labels, 3, seed=3)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x[:3], y)
  assert not np.array_equal(a[0], scenes.make_scenes(images, labels, 5, seed=4)[0])


def test_scene_boxes_are_the_tight_boxes_of_their_items_and_barely_overlap():
  images, labels = fake_items()
  canvases, boxes, classes = scenes.make_scenes(images, labels, 30, seed=0)
  counts = (classes >= 0).sum(1)
  assert counts.min() >= 1 and counts.max() <= scenes.MAX_ITEMS
  scenes.check_annotations(boxes, classes, (scenes.CANVAS, scenes.CANVAS), 10)
  for canvas, scene_boxes, n in zip(canvases[..., 0], boxes, counts):
    for i, (x, y, w, h) in enumerate(scene_boxes[:n].astype(int)):
      inside = canvas[y:y + h, x:x + w] >= scenes.INK
      # Ink reaches all four edges of a tight box.
      assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
      others = np.delete(scene_boxes[:n], i, axis=0)
      if len(others):
        assert scenes.iou(scene_boxes[i], others).max() <= scenes.MAX_IOU + 1e-6


def test_items_are_scaled_within_the_stated_range():
  images, labels = fake_items()
  _, boxes, classes = scenes.make_scenes(images, labels, 30, seed=1)
  sides = boxes[classes >= 0][:, 2:]
  assert sides.max() <= math.ceil(28 * scenes.SCALES[1]) and sides.min() >= 1


@pytest.mark.parametrize('box, cls, message', [
    ([10, 10, 0, 5], 0, r'box 1 of image 0, \[10.0, 10.0, 0.0, 5.0\], has zero area'),
    ([120, 10, 20, 5], 0, 'lies outside the 128x128 image'),
    ([-1, 10, 20, 5], 0, 'lies outside the 128x128 image'),
    ([10, 10, 20, 5], 10, r'has a class outside 0..9'),
])
def test_bad_boxes_get_one_sentence(box, cls, message):
  boxes = np.array([[[0, 0, 4, 4], box]], np.float32)
  classes = np.array([[1, cls]], np.int32)
  with pytest.raises(errors.InvalidValueError, match=message):
    scenes.check_annotations(boxes, classes, (128, 128), 10)


def test_an_image_with_no_objects_is_valid_and_is_absent_from_cocos_annotations():
  boxes, classes = np.zeros((2, 3, 4), np.float32), np.full((2, 3), -1, np.int32)
  boxes[1, 0], classes[1, 0] = [1, 2, 3, 4], 7
  scenes.check_annotations(boxes, classes, (128, 128), 10)
  truth = scenes.coco_annotations(boxes, classes)
  assert [a['image_id'] for a in truth['annotations']] == [2]
  assert truth['annotations'][0]['category_id'] == 8 and truth['annotations'][0]['area'] == 12
  assert len(truth['images']) == 2 and len(truth['categories']) == 10


def test_gaussian_radius_matches_the_hand_computed_cornernet_rule():
  # 10x10, overlap 0.7: r1 = (20 + sqrt(400 - 4 * 30 / 1.7)) / 2 = 19.07,
  # r2 = (40 + sqrt(1600 - 16 * 30)) / 2 = 36.73, r3 = (-28 + sqrt(784 + 4 * 2.8 * 30)) / 2.
  expected = (-28 + math.sqrt(784 + 4 * 2.8 * 30)) / 2
  assert float(detection.gaussian_radius(10.0, 10.0)) == pytest.approx(expected, rel=1e-5)


def test_targets_put_a_peak_size_and_offset_at_each_centre():
  boxes = jnp.array([[8, 16, 16, 8], [40, 0, 10, 6], [0, 0, 0, 0]], jnp.float32)
  classes = jnp.array([3, 1, -1])
  t = detection.targets(boxes, classes, (16, 16), num_classes=5, stride=4)
  # Centres (16, 20) / 4 = (4, 5) and (45, 3) / 4 = (11.25, 0.75).
  assert t['heatmap'][5, 4, 3] == 1 and t['heatmap'][0, 11, 1] == 1
  assert int((t['heatmap'] == 1).sum()) == 2 and float(t['heatmap'][..., [0, 2, 4]].max()) == 0
  np.testing.assert_array_equal(t['index'][:2], [5 * 16 + 4, 0 * 16 + 11])
  np.testing.assert_allclose(t['size'][:2], [[4, 2], [2.5, 1.5]])
  np.testing.assert_allclose(t['offset'][:2], [[0, 0], [0.25, 0.75]])
  np.testing.assert_array_equal(t['mask'], [1, 1, 0])


def perfect_outputs(t):
  """CenterNet outputs that say exactly what the targets say."""
  b, k = t['index'].shape
  h, w = t['heatmap'].shape[1:3]
  def scatter(values):
    field = jnp.zeros((b, h * w, 2)).at[jnp.arange(b)[:, None], t['index']].set(values)
    return field.reshape(b, h, w, 2)
  return {'heatmap': jnp.where(t['heatmap'] == 1, 30.0, -30.0), 'size': scatter(t['size']),
          'offset': scatter(t['offset'])}


def hand_made_batch():
  boxes = jnp.array([[[8, 16, 16, 8], [40, 0, 10, 6], [0, 0, 0, 0]],
                     [[20, 20, 30, 30], [0, 0, 0, 0], [0, 0, 0, 0]]], jnp.float32)
  classes = jnp.array([[3, 1, -1], [0, -1, -1]])
  return boxes, classes, detection.batch_targets(boxes, classes, (16, 16), 5, 4)


def test_the_loss_of_perfect_predictions_is_zero_and_grows_with_error():
  _, _, t = hand_made_batch()
  perfect = perfect_outputs(t)
  total, terms = detection.loss(perfect, t)
  assert float(total) < 1e-6 and all(float(v) < 1e-6 for v in terms.values())
  worse = dict(perfect, size=perfect['size'] + 1.0)
  assert float(detection.loss(worse, t)[1]['size_loss']) == pytest.approx(1.0, rel=1e-3)
  unsure = dict(perfect, heatmap=jnp.zeros_like(perfect['heatmap']))
  assert float(detection.loss(unsure, t)[0]) > 0.1


def test_decoding_perfect_predictions_gives_back_the_boxes():
  boxes, classes, t = hand_made_batch()
  found, scores, found_classes = detection_model.decode(perfect_outputs(t), stride=4,
                                                        max_detections=3)
  # Both peaks score sigmoid(30) = 1.0 in float32: compare them in the order of x.
  order = np.argsort(found[0, :2, 0])
  np.testing.assert_allclose(found[0, :2][order], boxes[0, :2], atol=1e-4)
  np.testing.assert_array_equal(found_classes[0, :2][order], [3, 1])
  np.testing.assert_allclose(found[1, 0], boxes[1, 0], atol=1e-4)
  assert scores[0, 2] < 1e-6 and scores[1, 1] < 1e-6  # Beyond the objects: background.


def test_the_flip_test_averages_a_mirrors_outputs_mirrored_back():
  _, _, t = hand_made_batch()
  outputs = perfect_outputs(t)
  mirror = {key: jnp.flip(value, axis=2) for key, value in outputs.items()}
  mirror['size'] = mirror['size'] * 3  # The average of 1x and 3x the sizes is 2x.
  averaged = detection_model.flip_average(outputs, mirror)
  np.testing.assert_allclose(jax.nn.sigmoid(averaged['heatmap']),
                             jax.nn.sigmoid(outputs['heatmap']), atol=1e-5)
  np.testing.assert_allclose(averaged['size'], 2 * outputs['size'], rtol=1e-6)
  np.testing.assert_array_equal(averaged['offset'], outputs['offset'])
  unmirrored = detection_model.flip_average(outputs, outputs)  # Peaks in the wrong columns.
  assert float(jax.nn.sigmoid(unmirrored['heatmap']).max()) < 0.51


def ap_case(detections):
  truth = {'images': [{'id': 1, 'width': 100, 'height': 100}],
           'categories': [{'id': 1, 'name': 'a'}],
           'annotations': [{'id': 1, 'image_id': 1, 'category_id': 1, 'bbox': [10, 10, 20, 20],
                            'area': 400, 'iscrowd': 0},
                           {'id': 2, 'image_id': 1, 'category_id': 1, 'bbox': [60, 60, 20, 20],
                            'area': 400, 'iscrowd': 0}]}
  return coco.evaluate(truth, [{'image_id': 1, 'category_id': 1, 'bbox': box, 'score': s}
                               for box, s in detections])


def test_coco_ap_on_a_hand_made_case_is_what_101_point_interpolation_gives():
  # One of two objects found exactly, first: precision 1 up to recall 0.5, i.e. at 51 of COCO's
  # 101 recall points, at every IoU threshold.
  found = ap_case([([10, 10, 20, 20], 0.9)])
  assert found['AP'] == pytest.approx(51 / 101) and found['AP50'] == pytest.approx(51 / 101)
  assert found['AP_small'] == pytest.approx(51 / 101) and math.isnan(found['AP_large'])
  # A false positive ranked below it changes nothing; ranked above it, it halves the precision.
  assert ap_case([([10, 10, 20, 20], 0.9), ([40, 0, 5, 5], 0.5)])['AP'] == pytest.approx(51 / 101)
  assert ap_case([([10, 10, 20, 20], 0.9), ([40, 0, 5, 5], 0.95)])['AP'] == pytest.approx(
      51 / 101 / 2)
  # Shifted by 4 pixels: IoU 16 * 20 / (2 * 400 - 320) = 2/3, a hit at thresholds 0.50..0.65.
  shifted = ap_case([([14, 10, 20, 20], 0.9)])
  assert shifted['AP50'] == pytest.approx(51 / 101) and shifted['AP75'] == 0
  assert shifted['AP'] == pytest.approx(4 / 10 * 51 / 101)
  assert ap_case([]) == {name: 0.0 for name in coco.METRICS}


def tiny_centernet(num_classes=10):
  backbone = models.create('resnet18', input_shape=(128, 128, 1), widths=(8, 8, 16, 16),
                           stage_sizes=(1, 1, 1, 1))
  return detection_model.CenterNet(backbone, num_classes, pyramid_width=16, head_width=16)


def test_centernet_reads_the_pyramids_finest_level():
  model = tiny_centernet()
  x = jax.ShapeDtypeStruct((2, 128, 128, 1), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
  outputs, pyramid = jax.eval_shape(
      lambda v, x: model.apply(v, x, return_pyramid=True), variables, x)
  assert outputs['heatmap'].shape == (2, 32, 32, 10) and outputs['size'].shape == (2, 32, 32, 2)
  assert [p.shape for p in pyramid] == [(2, s, s, 16) for s in (32, 16, 8, 4)]
  assert 'classifier' not in variables['params']['backbone']


@pytest.mark.slow  # 300 steps of a small CenterNet.
def test_centernet_overfits_a_few_scenes():
  images, labels = fake_items()
  canvases, boxes, classes = scenes.make_scenes(images, labels, 4, seed=0)
  model = tiny_centernet()
  x = jnp.asarray(canvases, jnp.float32) / 255
  t = detection.batch_targets(jnp.asarray(boxes), jnp.asarray(classes), (32, 32), 10, 4)
  variables = model.init(jax.random.key(0), x)
  tx = optax.adam(3e-3)
  params, stats = variables['params'], variables['batch_stats']
  opt_state = tx.init(params)

  @jax.jit
  def step(params, stats, opt_state):
    def loss_fn(params):
      outputs, updates = model.apply({'params': params, 'batch_stats': stats}, x, train=True,
                                     mutable=['batch_stats'])
      return detection.loss(outputs, t)[0], updates['batch_stats']
    (value, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state)
    return optax.apply_updates(params, updates), stats, opt_state, value

  for _ in range(300):
    params, stats, opt_state, value = step(params, stats, opt_state)
  outputs = model.apply({'params': params, 'batch_stats': stats}, x)
  found = detection_model.decode(outputs, stride=4, max_detections=20)
  result = coco.evaluate(scenes.coco_annotations(boxes, classes),
                         coco.detections_json(*map(np.asarray, found)))
  assert result['AP50'] > 0.9, (result, float(value))


def test_evaluation_decodes_the_averaged_weights_beside_the_plain_ones():
  model, tx = tiny_centernet(), optax.adam(1e-3)
  state = steps.create_train_state(model, tx, (128, 128, 1), seed=0, ema=True)
  other = steps.create_train_state(model, tx, (128, 128, 1), seed=1)
  state = state.replace(ema={'params': other.params, 'batch_stats': other.batch_stats})
  canvases, _, _ = scenes.make_scenes(*fake_items(), 2, seed=0)
  batch = {'image': jnp.asarray(canvases), 'mask': jnp.ones(2)}
  evaluate = lambda s, **kw: jax.jit(functools.partial(
      detection.eval_step, normalize=lambda x: x.astype(jnp.float32) / 255, max_detections=5,
      **kw))(s, batch)
  found, expected = evaluate(state, flip=True), evaluate(other)
  for key in ('boxes', 'scores', 'classes'):  # The averages decode as a model of their own.
    np.testing.assert_allclose(found[f'ema_{key}'], expected[key], rtol=1e-5, atol=1e-5)
  assert not np.allclose(found['scores'], found['ema_scores'])
  assert 'tta_boxes' in found and 'ema_tta_boxes' not in found
  assert 'ema_boxes' not in expected  # A state without averages decodes only its own.


# ------------------------------------------------------------------------------------------------
# Box-aware augmentation, the pipeline, the config and the training loop.

def test_a_flip_mirrors_the_boxes_with_the_image():
  image = jnp.zeros((16, 16, 1), jnp.uint8).at[2:6, 1:4].set(200)
  boxes, classes = jnp.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]]), jnp.array([2, -1])
  aug = augment.Augmentation(flip=True)
  for seed in range(8):  # Each draw is either the identity or the mirror, boxes agreeing.
    flipped, moved, kept = augment.augment_scene(jax.random.key(seed), image, boxes, classes, aug)
    np.testing.assert_array_equal(kept, classes)
    x, y, w, h = np.asarray(moved[0]).astype(int)
    assert (flipped[y:y + h, x:x + w] == 200).all() and int(flipped.sum()) == int(image.sum())
    np.testing.assert_array_equal(moved[1], 0)


def test_zooming_scales_and_moves_the_boxes_and_drops_those_mostly_cut_off():
  image = jnp.zeros((32, 32, 1), jnp.uint8).at[4:12, 4:12].set(255).at[24:32, 28:32].set(255)
  boxes = jnp.array([[4.0, 4.0, 8.0, 8.0], [28.0, 24.0, 4.0, 8.0]])
  aug = augment.Augmentation(scene_scale=(2.0, 2.0))
  zoomed, moved, kept = augment.augment_scene(jax.random.key(0), image, boxes,
                                              jnp.array([0, 1]), aug)
  # The zoom doubles every side; the offset lies between 0 and -32 on each axis.
  if kept[0] >= 0:
    x, y, w, h = np.asarray(moved[0])
    assert w <= 16 and h <= 16 and (w == 16 or x in (0.0,) or x + w == 32)
    assert float(zoomed[int(y) + 1:int(y + h) - 1, int(x) + 1:int(x + w) - 1].min()) > 200
  assert all(c in (-1, i) for i, c in enumerate(np.asarray(kept)))
  assert ((np.asarray(kept) < 0) == (np.asarray(moved).sum(1) == 0)).all()


def test_augment_scene_keeps_everything_when_off():
  image = jnp.arange(64, dtype=jnp.uint8).reshape(8, 8, 1)
  boxes, classes = jnp.array([[1.0, 1.0, 2.0, 2.0]]), jnp.array([4])
  out = augment.augment_scene(jax.random.key(0), image, boxes, classes, augment.Augmentation())
  for a, b in zip(out, (image, boxes, classes)):
    np.testing.assert_array_equal(a, b)


def scenes_config():
  from configs import centernet_fashion_mnist_scenes
  config = centernet_fashion_mnist_scenes.get_config()
  config.model_kwargs.widths = (8, 8, 16, 16)
  config.model_kwargs.stage_sizes = (1, 1, 1, 1)
  config.detection.pyramid_width = config.detection.head_width = 8
  config.batch_size, config.eval_batch_size = 8, 8
  config.num_train_steps, config.log_every_steps = 4, 2
  config.eval_every_steps = config.checkpoint_every_steps = 2
  config.tta_flip = True
  config.ema_decay = 0.9
  return config


FEW_SCENES = {'train': 16, 'test': 6}


@pytest.fixture
def few_scenes(monkeypatch):
  monkeypatch.setattr(scenes, 'NUM_SCENES', FEW_SCENES)


@pytest.fixture(scope='module')
def trained_detector(tmp_path_factory):
  """A tiny CenterNet trained 4 steps on 16 scenes: (workdir, its RunResult)."""
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(scenes, 'NUM_SCENES', FEW_SCENES)
    workdir = str(tmp_path_factory.mktemp('detector') / 'run')
    return workdir, loop.train_and_evaluate(scenes_config(), workdir)


@pytest.mark.slow  # Compiles a CenterNet's training and evaluation.
def test_a_detector_trains_evaluates_with_coco_ap_and_resumes(trained_detector, few_scenes):
  workdir, result = trained_detector
  assert result.step == 4 and 0 <= result.metrics['test_AP'] <= 1
  assert 0 <= result.metrics['tta_test_AP'] <= 1  # CenterNet's flip test, beside the plain AP.
  assert 0 <= result.metrics['ema_test_AP'] <= 1  # The averaged weights', beside it too.
  assert result.metrics['num_test_examples'] == 6
  records = metrics.read_metrics(workdir)
  assert [r['step'] for r in records if 'test_AP50' in r] == [2, 4]
  assert {'heatmap_loss', 'size_loss', 'offset_loss'} <= set(
      next(r for r in records if 'train_loss' in r))
  config = scenes_config()
  config.num_train_steps = 6
  assert loop.train_and_evaluate(config, workdir).step == 6  # From the step-4 checkpoint.


def run_script(script, *args):
  return subprocess.run([sys.executable, '-m', script, *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=300)


@pytest.mark.slow  # Starts processes that compile the detector.
def test_predict_draws_the_boxes_and_writes_coco_json(trained_detector, tmp_path):
  workdir, _ = trained_detector
  scene = os.path.join(ROOT, 'docs', 'scenes', 'fashion_mnist_scenes_test_4.png')
  result = run_script('experiments.predict', f'--workdir={workdir}', f'--images={scene}',
                      '--score_threshold=0', f'--draw_dir={tmp_path}')
  assert result.returncode == 0, result.stderr
  assert 'object(s) scoring at least 0' in result.stdout
  written = json.load(open(tmp_path / 'detections.json'))
  assert written['images'][0]['width'] == 128 and len(written['annotations']) == 100
  assert {'bbox', 'score', 'category_id'} <= set(written['annotations'][0])
  assert os.path.exists(tmp_path / 'fashion_mnist_scenes_test_4.png')
  bad = run_script('experiments.predict', f'--workdir={workdir}', f'--images={scene}',
                   '--score_threshold=1.5', f'--draw_dir={tmp_path / "bad"}')
  assert bad.returncode == 1 and bad.stderr.strip() == (
      'error: the score threshold must be in [0, 1], got 1.5')
  assert not os.path.exists(tmp_path / 'bad')


def test_the_pipeline_carries_boxes_and_flips_them_with_their_scenes(few_scenes):
  dataset = datasets.load('fashion_mnist_scenes')
  dp = parallel.DataParallel(1)
  source = pipeline.InMemoryPipeline(dataset, dp, 4, 6, seed=0,
                                     augmentation=augment.Augmentation(flip=True))
  batch = next(source.train_batches(0, 1))
  assert batch['boxes'].shape == (1, 4, scenes.MAX_ITEMS, 4)
  assert batch['classes'].shape == (1, 4, scenes.MAX_ITEMS)
  (evaluation,) = list(source.eval_batches())
  np.testing.assert_array_equal(evaluation['boxes'][0], dataset.test.targets['boxes'])
  np.testing.assert_array_equal(evaluation['mask'][0], 1)


@pytest.mark.parametrize('field, value, message', [
    ('mixup_alpha', 0.2, 'mixup_alpha applies to classification'),
    ('model', 'm5', "model 'm5' reads audio but dataset 'fashion_mnist_scenes' holds detection"),
])
def test_classification_settings_are_refused_for_a_detection_dataset(field, value, message):
  config = scenes_config()
  config[field] = value
  config.model_kwargs = {}
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(config, 1)


def test_scene_scale_is_refused_for_a_classification_dataset(digits_config):
  digits_config.augment.scene_scale = (0.5, 2.0)
  with pytest.raises(config_lib.ConfigError, match='augment.scene_scale moves boxes'):
    config_lib.validate(digits_config, 1)


@pytest.mark.slow  # Makes the 13,000 scenes from the real Fashion-MNIST.
def test_the_real_scenes_match_their_catalogue_entry():
  dataset = datasets.load('fashion_mnist_scenes')
  assert (len(dataset.train), len(dataset.test)) == (12_000, 1_000)
  mean, std = datasets.channel_stats(dataset.train.images)
  np.testing.assert_allclose(mean, dataset.info.mean, atol=5e-5)
  np.testing.assert_allclose(std, dataset.info.std, atol=5e-5)
  for split in (dataset.train, dataset.test):
    scenes.check_annotations(split.targets['boxes'], split.targets['classes'], (128, 128), 10)
    np.testing.assert_array_equal(split.labels, (split.targets['classes'] >= 0).sum(1))

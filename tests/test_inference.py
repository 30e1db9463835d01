"""Classifying image files: evaluation preprocessing, top classes by name, and experiments.predict
end to end on a converted workdir."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from configs import default
from convjax.data import datasets, streaming
from convjax.deploy import inference
from convjax.models import torchvision_weights
from convjax.training import saved_run
from tests import test_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RNG = np.random.default_rng(0)


def save(path, array, mode=None):
  Image.fromarray(array, mode).save(path)
  return str(path)


@pytest.mark.parametrize('mode, shape', [('RGB', (200, 300, 3)), ('L', (80, 50)),
                                         ('RGBA', (64, 64, 4))])
def test_any_mode_and_size_becomes_the_models_input(tmp_path, mode, shape):
  path = save(tmp_path / 'image.png', RNG.integers(0, 256, shape, dtype=np.uint8), mode)
  for input_shape, streamed in (((224, 224, 3), True), ((28, 28, 1), False)):
    image = inference.read_image(path, input_shape, streamed)
    assert image.shape == input_shape and image.dtype == np.uint8


def test_streamed_datasets_crop_the_centre_as_evaluation_does(tmp_path):
  """A 256x512 image: shorter side to 224 / 0.875 = 256 (unchanged), then the central 224x224."""
  pixels = RNG.integers(0, 256, (256, 512, 3), dtype=np.uint8)
  image = inference.read_image(save(tmp_path / 'wide.png', pixels), (224, 224, 3), True)
  np.testing.assert_array_equal(image, pixels[16:240, 144:368])
  assert image.shape == streaming.centre_crop(pixels, 224).shape


def test_top_classes_are_the_likeliest_in_order():
  probabilities = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]])
  top = inference.top_classes(probabilities, ('a', 'b', 'c'), 2)
  assert [[(c['class'], c['probability']) for c in row] for row in top] == [
      [('b', 0.6), ('c', 0.3)], [('a', 0.5), ('c', 0.3)]]


def test_imagenet_ships_its_class_names():
  names = datasets.label_names('imagenet2012')
  assert len(names) == 1000 and names[0] == 'tench' and names[-1] == 'toilet tissue'
  assert set(datasets.label_names('imagenette')) <= set(names)


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
  """A tiny ResNet-18 for ImageNet's 1000 classes, converted from a torchvision-shaped state."""
  name, fields = 'resnet18', test_weights.TINY['resnet18']
  state = test_weights.random_state(name, 1000, **fields)
  variables = torchvision_weights.load_torch(name, state, 1000, **fields)
  config = default.get_config()
  config.model, config.dataset, config.num_classes = name, 'imagenet2012', 1000
  config.model_kwargs.update(fields)
  workdir = str(tmp_path_factory.mktemp('converted') / 'resnet18')
  saved_run.write_converted(workdir, config, variables, 'resnet18.safetensors')
  return workdir


def test_classify_names_imagenet_classes(converted, tmp_path):
  saved = saved_run.load_model(converted)
  paths = [save(tmp_path / f'{i}.png', RNG.integers(0, 256, (90 + i, 120, 3), dtype=np.uint8))
           for i in range(2)]
  predictions = inference.classify(saved, paths, top_k=4)
  assert [p['image'] for p in predictions] == paths
  for prediction in predictions:
    top = prediction['top_k']
    assert [c['class'] for c in top] == [datasets.label_names('imagenet2012')[c['index']] for c in top]
    assert all(a['probability'] >= b['probability'] for a, b in zip(top, top[1:]))


def run_predict(*flags):
  return subprocess.run([sys.executable, '-m', 'experiments.predict', *flags], cwd=ROOT,
                        capture_output=True, text=True, timeout=120)


@pytest.mark.slow  # Starts processes or trains a real run.
def test_predict_script_prints_and_writes_json(converted, tmp_path):
  image = save(tmp_path / 'a.png', RNG.integers(0, 256, (60, 60), dtype=np.uint8), 'L')
  output = tmp_path / 'predictions.json'
  result = run_predict(f'--workdir={converted}', f'--images={image}', '--top_k=3',
                       f'--output={output}')
  assert result.returncode == 0, result.stderr
  written = json.loads(output.read_text())
  assert len(written[0]['top_k']) == 3
  assert result.stdout.startswith(f"{image}: {written[0]['top_k'][0]['class']} ")


@pytest.mark.slow  # Starts processes or trains a real run.
def test_predict_script_refuses_an_unreadable_image_and_writes_nothing(converted, tmp_path):
  good = save(tmp_path / 'a.png', RNG.integers(0, 256, (60, 60, 3), dtype=np.uint8))
  bad = tmp_path / 'b.png'
  bad.write_bytes(b'not an image')
  output = tmp_path / 'predictions.json'
  result = run_predict(f'--workdir={converted}', f'--images={good},{bad}', f'--output={output}')
  assert result.returncode == 1
  assert f"cannot read image '{bad}': not an image format Pillow decodes" in result.stderr
  assert not output.exists()


def test_a_workdir_without_a_checkpoint_is_refused(tmp_path):
  with pytest.raises(saved_run.NoCheckpointError, match='holds no checkpoint'):
    saved_run.load_model(str(tmp_path))


# ------------------------------------------------------------------------------------------------
# Export.

@pytest.mark.slow  # Serialises, reloads and runs an export.
def test_exported_artifact_gives_convjaxs_logits_for_any_batch(converted):
  import jax  # pylint: disable=import-outside-toplevel
  from convjax.deploy import export  # pylint: disable=import-outside-toplevel
  from convjax.nn import conv_backend
  saved = saved_run.load_model(converted)
  before = conv_backend.backend_setting()
  blob = export.export_model(saved, ('cpu', 'cuda')).serialize()
  assert conv_backend.backend_setting() == before  # Exporting leaves the backend as it was.
  loaded = jax.export.deserialize(blob)
  assert loaded.platforms == ('cpu', 'cuda')
  for batch in (1, 3):
    images = RNG.integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8)
    expected = np.asarray(saved.apply(images))
    # The artifact convolves with XLA's ops, convjax here perhaps with oneDNN: equal to float
    # rounding, relative to the logits' scale (random batch-norm statistics make them large).
    difference = np.max(np.abs(np.asarray(loaded.call(images)) - expected))
    assert difference <= 1e-5 * np.max(np.abs(expected))


@pytest.mark.slow  # Starts processes or trains a real run.
def test_export_script_writes_an_artifact_and_refuses_a_workdir_without_checkpoint(converted,
                                                                                   tmp_path):
  output = tmp_path / 'model.jaxexport'
  result = subprocess.run([sys.executable, '-m', 'experiments.export', f'--workdir={converted}',
                           f'--output={output}'], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
  assert result.returncode == 0 and output.stat().st_size > 0, result.stderr
  empty = tmp_path / 'empty'
  empty.mkdir()
  refused = subprocess.run([sys.executable, '-m', 'experiments.export', f'--workdir={empty}',
                            f'--output={tmp_path / "none.jaxexport"}'], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
  assert refused.returncode == 1 and 'holds no checkpoint' in refused.stderr
  assert not (tmp_path / 'none.jaxexport').exists()


# ------------------------------------------------------------------------------------------------
# Visualising a converted workdir, whose dataset is streamed.

@pytest.mark.slow  # Starts processes or trains a real run.
def test_visualize_draws_a_converted_workdirs_filters_and_an_images_feature_maps(converted,
                                                                                  tmp_path):
  image = save(tmp_path / 'photo.png', RNG.integers(0, 256, (150, 200, 3), dtype=np.uint8))
  result = subprocess.run([sys.executable, '-m', 'experiments.visualize',
                           f'--workdir={converted}', f'--image={image}'], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr
  plots = os.path.join(converted, 'plots')
  assert sorted(os.listdir(plots)) == ['feature_maps.png', 'filters.png']
  assert "'imagenet2012' is streamed, so the plots of its test split" in result.stdout


@pytest.mark.parametrize('platforms, message', [((), 'no platform given; name at least one of'),
                                                (('',), 'no platform given'),
                                                (('cpu', 'tpuu'), "unknown platform 'tpuu'")])
def test_export_names_what_is_wrong_with_the_platforms(converted, platforms, message):
  from convjax import errors  # pylint: disable=import-outside-toplevel
  from convjax.deploy import export
  with pytest.raises(errors.InvalidValueError, match=message):
    export.export_model(saved_run.load_model(converted), platforms)

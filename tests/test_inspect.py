"""Looking inside a trained run: filters, feature maps, confusions, mistakes, similarity search,
and the visualize and similar commands with their refusals."""
import os
import subprocess
import sys

import numpy as np
import pytest
import sklearn.decomposition
import sklearn.metrics
from PIL import Image

from convjax.analysis import similarity, visualize
from convjax.training import loop, saved_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  """LeNet-5 trained for 12 steps on digits (359 test images)."""
  from configs import default
  config = default.get_config()
  config.update(dataset='digits', image_size=28, batch_size=64, eval_batch_size=120,
                num_train_steps=12, eval_every_steps=6, log_every_steps=4)
  directory = str(tmp_path_factory.mktemp('trained'))
  loop.train_and_evaluate(config, directory)
  return directory


def run(module, *args):
  return subprocess.run([sys.executable, '-m', module, *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=300)


@pytest.mark.slow
def test_a_reopened_run_predicts_what_training_evaluated(workdir):
  run_ = saved_run.load(workdir)
  assert run_.step == 12 and len(run_.test) == 359
  probabilities, features = run_.predict(batch_size=100)
  assert probabilities.shape == (359, 10) and features.shape == (359, 84)
  np.testing.assert_allclose(probabilities.sum(-1), 1, rtol=1e-5)
  final = [l for l in open(os.path.join(workdir, 'metrics.jsonl')) if '"eval_images_per_sec"' in l]
  accuracy = float((probabilities.argmax(-1) == run_.test.labels).mean())
  assert f'"test_accuracy": {accuracy}' in final[-1]


@pytest.mark.slow
def test_feature_maps_follow_conv_activation_and_pooling(workdir):
  run_ = saved_run.load(workdir)
  image = run_.normalize(run_.test.images[:1])[0]
  stages = visualize.feature_maps(run_.model, run_.variables, image)
  assert [(label.split(' (')[0], maps.shape) for label, maps in stages] == [
      ('Conv_0', (28, 28, 6)), ('activation into MaxPool2x2_0', (28, 28, 6)),
      ('MaxPool2x2_0', (14, 14, 6)), ('Conv_1', (10, 10, 16)),
      ('activation into MaxPool2x2_1', (10, 10, 16)), ('MaxPool2x2_1', (5, 5, 16))]
  np.testing.assert_allclose(stages[1][1], np.maximum(stages[0][1], 0))  # ReLU.
  pooled = stages[1][1].reshape(14, 2, 14, 2, 6).max(axis=(1, 3))
  np.testing.assert_allclose(stages[2][1], pooled)
  layer, kernel = visualize.first_conv_filters(run_.model, run_.variables, (28, 28, 1))
  assert layer == 'Conv_0' and kernel.shape == (5, 5, 1, 6)
  np.testing.assert_array_equal(kernel, run_.variables['params']['Conv_0']['kernel'])


def test_confusion_matrix_and_confident_mistakes():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 4, 200)
  probabilities = rng.dirichlet(np.ones(4), 200)
  predictions = probabilities.argmax(-1)
  counts = visualize.confusion_matrix(labels, predictions, 4)
  np.testing.assert_array_equal(counts, sklearn.metrics.confusion_matrix(labels, predictions))
  wrong = visualize.confidently_wrong(probabilities, labels, 10)
  assert np.all(predictions[wrong] != labels[wrong])
  confidence = probabilities[wrong, predictions[wrong]]
  assert np.all(np.diff(confidence) <= 0)
  every_wrong = np.flatnonzero(predictions != labels)
  assert confidence[0] == probabilities[every_wrong, predictions[every_wrong]].max()


def test_nearest_neighbours_and_precision_at_k_match_brute_force():
  rng = np.random.default_rng(1)
  embeddings = rng.normal(size=(50, 6)).astype(np.float32)
  labels = rng.integers(0, 3, 50)
  unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
  cosine = unit @ unit.T
  indices, sims = similarity.nearest(embeddings, 7, 5)
  expected = [j for j in np.argsort(-cosine[7]) if j != 7][:5]
  np.testing.assert_array_equal(indices, expected)
  np.testing.assert_allclose(sims, cosine[7, expected], rtol=1e-5)
  hits = [np.mean(labels[[j for j in np.argsort(-cosine[i]) if j != i][:5]] == labels[i])
          for i in range(50)]
  assert similarity.precision_at_k(embeddings, labels, 5, block=7) == pytest.approx(np.mean(hits))


def test_pca_matches_scikit_learn_up_to_sign():
  points = np.random.default_rng(2).normal(size=(40, 5)) * [5, 3, 1, 0.5, 0.1]
  mine = similarity.pca(points, 2)
  theirs = sklearn.decomposition.PCA(2).fit_transform(points)
  np.testing.assert_allclose(np.abs(mine), np.abs(theirs), rtol=1e-6, atol=1e-9)


def _is_png(path):
  image = Image.open(path)
  return image.format == 'PNG' and min(image.size) > 50 and np.asarray(image.convert('L')).std() > 0


@pytest.mark.slow
def test_visualize_writes_every_plot(workdir):
  result = run('experiments.visualize', f'--workdir={workdir}', '--image_index=3')
  assert result.returncode == 0, result.stderr
  for name in ('filters', 'feature_maps', 'loss', 'accuracy', 'confusion', 'confidently_wrong'):
    assert _is_png(os.path.join(workdir, 'plots', f'{name}.png')), name


@pytest.mark.slow
def test_kernels_table_needs_no_trained_run(tmp_path):
  result = run('experiments.visualize', f'--workdir={tmp_path}', '--kernels')
  assert result.returncode == 0, result.stderr
  assert _is_png(tmp_path / 'plots' / 'kernels.png')


@pytest.mark.slow
def test_similar_writes_neighbours_and_projection_and_reports_precision(workdir):
  result = run('experiments.similar', f'--workdir={workdir}', '--query=5', '--k=4')
  assert result.returncode == 0, result.stderr
  run_ = saved_run.load(workdir)
  _, features = run_.predict()
  precision = similarity.precision_at_k(features, run_.test.labels, 4)
  assert f'precision@4 over all 359 test images: {precision:.4f}' in result.stdout
  assert _is_png(os.path.join(workdir, 'plots', 'neighbours_5.png'))
  assert _is_png(os.path.join(workdir, 'plots', 'embedding_pca.png'))


@pytest.mark.slow
@pytest.mark.parametrize('module,args,message', [
    ('experiments.visualize', ['--image_index=359'],
     '--image_index=359 is out of range: the test set has 359 images (0 to 358)'),
    ('experiments.visualize', ['--num_wrong=0'], '--num_wrong must be at least 1'),
    ('experiments.similar', ['--query=-1'], '--query=-1 is out of range'),
    ('experiments.similar', ['--k=359'], '--k=359 is out of range: with 359 test images'),
])
def test_out_of_range_arguments_are_one_sentence(workdir, module, args, message):
  before = sorted(os.listdir(workdir))
  result = run(module, f'--workdir={workdir}', *args)
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(f'error: {message}')
  assert sorted(os.listdir(workdir)) == before


@pytest.mark.slow
@pytest.mark.parametrize('module', ['experiments.visualize', 'experiments.similar'])
def test_a_workdir_without_a_checkpoint_is_refused(tmp_path, module):
  result = run(module, f'--workdir={tmp_path}')
  assert result.returncode == 1
  assert f'error: {tmp_path} holds no checkpoint of a training run' in result.stderr
  assert os.listdir(tmp_path) == []

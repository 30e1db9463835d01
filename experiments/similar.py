"""Photo search with a trained network: nearest test images by cosine similarity of the
penultimate features, precision@k over the whole test set, and a 2-D map of the embedding.

  python -m experiments.similar --workdir=DIR --query=N --k=K [--projection=pca|tsne]

Writes DIR/plots/neighbours_N.png (the query and its k neighbours, with labels and similarities)
and DIR/plots/embedding_pca.png (or _tsne), and prints precision@k.
"""
import os

from absl import flags

from convjax import errors
from experiments import cli

_WORKDIR = flags.DEFINE_string('workdir', None, 'A training run directory.')
_QUERY = flags.DEFINE_integer('query', 0, 'Test image to search from.')
_K = flags.DEFINE_integer('k', 10, 'Neighbours per query.')
_PROJECTION = flags.DEFINE_enum('projection', 'pca', ['pca', 'tsne'], '2-D map of the embedding.')
_MAX_POINTS = flags.DEFINE_integer('max_points', 5000, 'Test images drawn in the 2-D map.')
flags.mark_flags_as_required(['workdir'])


def main(argv):
  del argv
  import numpy as np
  from convjax.analysis import plots, similarity
  from convjax.training import saved_run
  run = saved_run.load(_WORKDIR.value)
  n = len(run.test)
  cli.check_index('query', _QUERY.value, n, 'the test set')
  if not 1 <= _K.value < n:
    raise errors.InvalidValueError(
        f'--k={_K.value} is out of range: with {n} test images, k is 1 to {n - 1}')
  _, features = run.predict()
  labels, names = run.test.labels, run.label_names
  out = os.path.join(_WORKDIR.value, 'plots')

  neighbours, similarities = similarity.nearest(features, _QUERY.value, _K.value)
  images = run.test.images[:, :, :, 0] if run.test.images.shape[-1] == 1 else run.test.images
  grid = os.path.join(out, f'neighbours_{_QUERY.value}.png')
  plots.image_grid([images[_QUERY.value]] + [images[i] for i in neighbours],
                   [f'query #{_QUERY.value}\n{names[labels[_QUERY.value]]}'] +
                   [f'#{i} {names[labels[i]]}\ncos {s:.3f}' for i, s in zip(neighbours, similarities)],
                   grid, columns=min(_K.value + 1, 11), size=1.5,
                   suptitle=f'{_K.value} nearest test images by cosine similarity of '
                            f'{run.config.model} features ({features.shape[1]}-d)')

  precision = similarity.precision_at_k(features, labels, _K.value)
  shown = np.random.default_rng(0).permutation(n)[:_MAX_POINTS.value]
  project = similarity.pca if _PROJECTION.value == 'pca' else similarity.tsne
  projection = os.path.join(out, f'embedding_{_PROJECTION.value}.png')
  plots.projection(project(features[shown]), labels[shown], names,
                   f'{run.config.model} test embeddings, {_PROJECTION.value.upper()} '
                   f'({len(shown)} of {n} images drawn; precision@{_K.value} = {precision:.4f} '
                   f'over all {n})', projection)
  same = int(np.sum(labels[neighbours] == labels[_QUERY.value]))
  print(f'query {_QUERY.value} ({names[labels[_QUERY.value]]}): {same} of {_K.value} neighbours '
        f'share its label')
  print(f'precision@{_K.value} over all {n} test images: {precision:.4f}')
  print(f'wrote {grid}\nwrote {projection}')


if __name__ == '__main__':
  cli.run(main)

"""Classifies image files with a trained or converted workdir's model.

  python -m experiments.predict --workdir=DIR --images=a.png,b.jpg [--top_k=5] [--output=FILE.json]

Images of any size or mode go through the dataset's evaluation preprocessing
(convjax/deploy/inference.py); each line names an image and its top_k classes with their
probabilities. --output also writes them as JSON. An unreadable image stops the run in one
sentence before anything is written.
"""
from absl import flags

from convjax import errors
from experiments import cli

_WORKDIR = flags.DEFINE_string('workdir', None, 'A training run, or experiments.convert output.')
_IMAGES = flags.DEFINE_list('images', None, 'Image files to classify.')
_TOP_K = flags.DEFINE_integer('top_k', 5, 'Classes to show per image.')
_OUTPUT = flags.DEFINE_string('output', None, 'Also write the predictions here as JSON.')
flags.mark_flags_as_required(['workdir', 'images'])


def main(argv):
  del argv
  from convjax.deploy import inference
  from convjax.training import metrics, saved_run
  if _TOP_K.value < 1:
    raise errors.InvalidValueError(f'--top_k must be at least 1, got {_TOP_K.value}')
  saved = saved_run.load_model(_WORKDIR.value)
  predictions = inference.classify(saved, _IMAGES.value, _TOP_K.value)
  for prediction in predictions:
    best = ', '.join(f"{c['class']} {c['probability']:.3f}" for c in prediction['top_k'])
    print(f"{prediction['image']}: {best}")
  if _OUTPUT.value:
    metrics.write_json(_OUTPUT.value, predictions, make_dirs=True)


if __name__ == '__main__':
  cli.run(main)

"""Classifies image or sound files with a trained or converted workdir's model.

  python -m experiments.predict --workdir=DIR --images=a.png,b.jpg [--top_k=5] [--output=FILE.json]
  python -m experiments.predict --workdir=DIR --audio=seven.wav   (a speech model's workdir)

Images of any size or mode, and mono WAV files of any sample rate, go through the dataset's
evaluation preprocessing (convjax/deploy/inference.py); each line names a file and its top_k
classes with their probabilities. --output also writes them as JSON. An unreadable file stops the
run in one sentence before anything is written.
"""
from absl import flags

from convjax import errors
from experiments import cli

_WORKDIR = flags.DEFINE_string('workdir', None, 'A training run, or experiments.convert output.')
_IMAGES = flags.DEFINE_list('images', None, 'Image files to classify (an image model).')
_AUDIO = flags.DEFINE_list('audio', None, 'WAV files to classify (a speech model).')
_TOP_K = flags.DEFINE_integer('top_k', 5, 'Classes to show per image.')
_OUTPUT = flags.DEFINE_string('output', None, 'Also write the predictions here as JSON.')
flags.mark_flags_as_required(['workdir'])


def main(argv):
  del argv
  from convjax.deploy import inference
  from convjax.training import metrics, saved_run
  if _TOP_K.value < 1:
    raise errors.InvalidValueError(f'--top_k must be at least 1, got {_TOP_K.value}')
  saved = saved_run.load_model(_WORKDIR.value)
  paths = _files_for(saved.info.modality)
  notes = []
  predictions = inference.classify(saved, paths, _TOP_K.value, notes)
  for note in notes:
    print(f'note: {note}')
  for path, prediction in zip(paths, predictions):
    best = ', '.join(f"{c['class']} {c['probability']:.3f}" for c in prediction['top_k'])
    print(f'{path}: {best}')
  if _OUTPUT.value:
    metrics.write_json(_OUTPUT.value, predictions, make_dirs=True)


def _files_for(modality: str) -> list[str]:
  """The files of the flag that suits the model: --audio for speech models, else --images."""
  wanted, other = (_AUDIO, _IMAGES) if modality == 'audio' else (_IMAGES, _AUDIO)
  if other.value or not wanted.value:
    raise errors.InvalidValueError(f'this model classifies {modality}: pass the files as '
                                   f'--{wanted.name}=FILE,...')
  return wanted.value


if __name__ == '__main__':
  cli.run(main)

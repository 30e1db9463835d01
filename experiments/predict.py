"""Classifies image, sound or clip files, or lines of text, with a trained or converted
workdir's model.

  python -m experiments.predict --workdir=DIR --images=a.png,b.jpg [--top_k=5] [--output=FILE.json]
  python -m experiments.predict --workdir=DIR --audio=seven.wav   (a speech model's workdir)
  python -m experiments.predict --workdir=DIR --clips=clip.npy    (a video model's workdir)
  python -m experiments.predict --workdir=DIR --text="Carpe diem." --text="..."   (a text model)

Images of any size or mode, mono WAV files of any sample rate, clips saved with numpy.save
(uint8 [frames, height, width(, channels)] of the model's shape) and lines of text (as UTF-8
bytes, at most as long as the model reads) go through the dataset's evaluation preprocessing
(convjax/deploy/inference.py); each line names a file (or text) and its top_k classes with their
probabilities. --output also writes them as JSON. An unreadable file stops the run in one
sentence before anything is written.
"""
from absl import flags

from convjax import errors
from experiments import cli

_WORKDIR = flags.DEFINE_string('workdir', None, 'A training run, or experiments.convert output.')
_IMAGES = flags.DEFINE_list('images', None, 'Image files to classify (an image model).')
_AUDIO = flags.DEFINE_list('audio', None, 'WAV files to classify (a speech model).')
_CLIPS = flags.DEFINE_list('clips', None, '.npy clips to classify (a video model).')
_TEXT = flags.DEFINE_multi_string('text', None, 'A line of text to classify (a text model); '
                                  'repeat the flag for several.')
_TOP_K = flags.DEFINE_integer('top_k', 5, 'Classes to show per file.')
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
  """The files of the flag that suits the model: --audio for speech models, --clips for video
  models, --text (the texts themselves) for text models, else --images."""
  by_modality = {'image': _IMAGES, 'audio': _AUDIO, 'video': _CLIPS, 'text': _TEXT}
  wanted = by_modality[modality]
  if any(flag.value for flag in by_modality.values() if flag is not wanted) or not wanted.value:
    what = "--text='a line'" if wanted is _TEXT else f'--{wanted.name}=FILE,...'
    raise errors.InvalidValueError(f'this model classifies {modality}: pass {what}')
  return wanted.value


if __name__ == '__main__':
  cli.run(main)

"""Classifies image, sound or clip files, or lines of text, with a trained or converted
workdir's model.

  python -m experiments.predict --workdir=DIR --images=a.png,b.jpg [--top_k=5] [--output=FILE.json]
  python -m experiments.predict --workdir=DIR --audio=seven.wav   (a speech model's workdir)
  python -m experiments.predict --workdir=DIR --clips=clip.npy    (a video model's workdir)
  python -m experiments.predict --workdir=DIR --text="Carpe diem." --text="..."   (a text model)
  python -m experiments.predict --workdir=DIR --images=scene.png [--score_threshold=0.3]
      (a detector's workdir)

Images of any size or mode, mono WAV files of any sample rate, clips saved with numpy.save
(uint8 [frames, height, width(, channels)] of the model's shape) and lines of text (as UTF-8
bytes, at most as long as the model reads) go through the dataset's evaluation preprocessing
(convjax/deploy/inference.py); each line names a file (or text) and its top_k classes with their
probabilities. --output also writes them as JSON. An unreadable file stops the run in one
sentence before anything is written.

A detector (trained on a detection dataset) finds objects in each image instead: it prints each
box with its class and score, draws them into --draw_dir/NAME.png (DIR/detections/ by default),
and writes all of them as COCO-format JSON (images, categories, and annotations with scores) to
--output, or --draw_dir/detections.json.
"""
import os

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
_SCORE_THRESHOLD = flags.DEFINE_float('score_threshold', 0.3,
                                      'A detector: the lowest score of a box shown, in [0, 1].')
_DRAW_DIR = flags.DEFINE_string('draw_dir', None, 'A detector: where the drawn images go '
                                '(default: WORKDIR/detections).')
flags.mark_flags_as_required(['workdir'])


def main(argv):
  del argv
  from convjax.deploy import inference
  from convjax.training import metrics, saved_run
  if _TOP_K.value < 1:
    raise errors.InvalidValueError(f'--top_k must be at least 1, got {_TOP_K.value}')
  saved = saved_run.load_model(_WORKDIR.value)
  if saved.info.modality == 'detection':
    return _detect(saved)
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


def _detect(saved) -> None:
  """Boxes for every --images file: printed, drawn, and written as COCO-format JSON."""
  from convjax.analysis import plots
  from convjax.deploy import inference
  from convjax.training import metrics
  paths = _files_for('image')
  results = inference.detect(saved, paths, _SCORE_THRESHOLD.value)
  draw_dir = _DRAW_DIR.value or os.path.join(_WORKDIR.value, 'detections')
  drawn = [os.path.join(draw_dir, os.path.splitext(os.path.basename(p))[0] + '.png') for p in paths]
  if set(map(os.path.abspath, drawn)) & set(map(os.path.abspath, paths)):
    raise errors.InvalidValueError(f'--draw_dir={draw_dir} would overwrite an input image; '
                                   'choose another folder')
  for result, path in zip(results, drawn):
    print(f"{result['image']}: {len(result['detections'])} object(s) scoring at least "
          f'{_SCORE_THRESHOLD.value:g}')
    for d in result['detections']:
      x, y, w, h = (round(v) for v in d['bbox'])
      print(f"  {d['class']:12s} {d['score']:.2f}  x {x}, y {y}, {w}x{h}")
    pixels = inference.read_image(result['image'], (result['height'], result['width'],
                                                    saved.input_shape[-1]), False)
    plots.detections(pixels if pixels.shape[-1] == 3 else pixels[..., 0], result['detections'],
                     path, title=os.path.basename(result['image']))
  output = _OUTPUT.value or os.path.join(draw_dir, 'detections.json')
  metrics.write_json(output, _coco_json(results, saved.label_names), make_dirs=True)
  print(f'drew {len(drawn)} image(s) in {draw_dir}; detections in {output}')


def _coco_json(results: list[dict], names) -> dict:
  """The detections as a COCO-format file: images, categories, and annotations with scores."""
  found = [(i + 1, d) for i, r in enumerate(results) for d in r['detections']]
  annotations = [{'id': n + 1, 'image_id': image_id, 'category_id': d['category_id'],
                  'bbox': d['bbox'], 'area': d['bbox'][2] * d['bbox'][3], 'iscrowd': 0,
                  'score': d['score']} for n, (image_id, d) in enumerate(found)]
  return {'images': [{'id': i + 1, 'file_name': r['image'], 'width': r['width'],
                      'height': r['height']} for i, r in enumerate(results)],
          'categories': [{'id': c + 1, 'name': name} for c, name in enumerate(names)],
          'annotations': annotations}


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

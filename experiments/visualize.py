"""Draws what a trained network learned and does, from a workdir's latest checkpoint.

  python -m experiments.visualize --workdir=DIR [--image_index=N] [--image=FILE] [--num_wrong=16]
  python -m experiments.visualize --workdir=DIR --audio=seven.wav  (a speech model's workdir)
  python -m experiments.visualize --workdir=DIR --clip=clip.npy  (a video model's workdir)
  python -m experiments.visualize --workdir=DIR --text="Carpe diem."  (a text model's workdir)
  python -m experiments.visualize --workdir=DIR --kernels

Writes PNGs to DIR/plots/: filters.png (the first conv layer's filters: images for a 2-D net,
waveforms ordered by the frequency each passes best for a 1-D net, a 3x3 image per frame for a
3-D net, the bytes each filter responds to most for a text net), feature_maps.png (test example
N, or the file --image, --audio or --clip, or the --text, after each conv, activation and pooling
stage; sound as its waveform, then its spectrogram or 1-D maps with
time across; a clip frame by frame, one map per stage: the one that changes most over time),
loss.png and accuracy.png (train and test curves from metrics.jsonl), confusion.png,
confidently_wrong.png (images, the log-mel spectrograms of sounds, clips' first and last
frames side by side, or the texts).
A workdir of a streamed dataset, such as one experiments.convert wrote for ImageNet weights,
gets the plots that need no test split: the filters, --image's feature maps and the curves.
A detector's workdir (a detection dataset) gets filters.png, pyramid.png (test scene N or --image
through the feature pyramid, level by level, and the centre heatmap), detections.png (its boxes,
the true ones dashed), loss.png and ap.png (COCO AP and AP50 by step).
--kernels instead writes kernels.png: every classic kernel of
convjax.nn.convolution_math.KERNELS applied to a photograph (scikit-image's bundled camera
image); it needs no trained run.
"""
import os

import numpy as np
from absl import flags

from convjax import errors
from experiments import cli

_WORKDIR = flags.DEFINE_string('workdir', None, 'A training run directory.')
_IMAGE_INDEX = flags.DEFINE_integer('image_index', 0, 'Test image whose feature maps to draw.')
_IMAGE = flags.DEFINE_string('image', None,
                             'An image file whose feature maps to draw, instead of a test image.')
_AUDIO = flags.DEFINE_string('audio', None,
                             'A WAV file whose feature maps to draw (a speech model), instead of '
                             'a test recording.')
_CLIP = flags.DEFINE_string('clip', None,
                            'A .npy clip whose feature maps to draw (a video model), instead of '
                            'a test clip.')
_TEXT = flags.DEFINE_string('text', None,
                            'A line of text whose feature maps to draw (a text model), instead '
                            'of a test text.')
_NUM_WRONG = flags.DEFINE_integer('num_wrong', 16, 'How many confident mistakes to show.')
_KERNELS = flags.DEFINE_bool('kernels', False, 'Draw the classic-kernels table on a photograph.')
flags.mark_flags_as_required(['workdir'])


def main(argv):
  del argv
  out = os.path.join(_WORKDIR.value, 'plots')
  if _KERNELS.value:
    print(f'wrote {draw_kernels(out)}')
    return
  from convjax.deploy import inference
  from convjax.training import saved_run
  if _NUM_WRONG.value < 1:
    raise errors.InvalidValueError(f'--num_wrong must be at least 1, got {_NUM_WRONG.value}')
  saved = saved_run.load_model(_WORKDIR.value)
  image = _read_example(saved)  # Before anything is drawn: an unreadable file writes nothing.
  if saved.info.modality == 'detection':
    run = saved_run.with_test_split(saved)
    cli.check_index('image_index', _IMAGE_INDEX.value, len(run.test), 'the test set')
    image = image or (run.test.images[_IMAGE_INDEX.value], f'test scene {_IMAGE_INDEX.value}')
    truth = () if _IMAGE.value else _boxes_of(run, _IMAGE_INDEX.value)
    paths = [draw_filters(saved, out), draw_pyramid(saved, *image, out),
             draw_detections(saved, *image, truth, out), *draw_detection_curves(saved, out)]
  elif saved.info.streaming:
    paths = draw_without_test_split(saved, image, out)
  else:
    run = saved_run.with_test_split(saved)
    cli.check_index('image_index', _IMAGE_INDEX.value, len(run.test), 'the test set')
    index = _IMAGE_INDEX.value
    label = run.label_names[run.test.labels[index]]
    image = image or (run.test.images[index], f'test example {index} ({label})')
    paths = [draw_filters(saved, out), draw_feature_maps(saved, *image, out),
             *draw_curves(saved, out), *draw_predictions(run, _NUM_WRONG.value, out)]
  print('\n'.join(f'wrote {p}' for p in paths))
  if saved.info.streaming:
    print(f"'{saved.config.dataset}' is streamed, so the plots of its test split (a test image's "
          'feature maps, confusion, confident mistakes) are left out; --image draws feature maps')


def _read_example(saved):
  """(example, title) of the file --image, --audio or --clip names (or the --text), preprocessed
  for evaluation; None when none is given. Refuses a flag that does not suit the model in one
  sentence."""
  from convjax.deploy import inference
  by_modality = {'image': _IMAGE, 'audio': _AUDIO, 'video': _CLIP, 'text': _TEXT}
  wanted = by_modality['image' if saved.info.modality == 'detection' else saved.info.modality]
  if any(flag.value for flag in by_modality.values() if flag is not wanted):
    raise errors.InvalidValueError(f'this model takes {saved.info.modality}: pass its file as '
                                   f'--{wanted.name}=FILE')
  if not wanted.value:
    return None
  if wanted is _TEXT:
    from convjax.data import text
    return text.encode(wanted.value, saved.input_shape[0], '--text'), repr(wanted.value[:40])
  examples, notes = inference.read_examples(saved, [wanted.value])
  for note in notes:
    print(f'note: {note}')
  return examples[0], os.path.basename(wanted.value)


def draw_without_test_split(saved, image, out: str) -> list[str]:
  """A streamed dataset's workdir: the filters, the feature maps of `image` ((pixels, title) or
  None) and the curves, where training wrote any (a converted workdir has none)."""
  from convjax.training import saved_run
  paths = [draw_filters(saved, out)]
  if image is not None:
    paths.append(draw_feature_maps(saved, *image, out))
  if saved_run.read_curves(saved.workdir)['train_loss'][0]:
    paths += draw_curves(saved, out)
  return paths


def draw_kernels(out: str) -> str:
  import numpy as np
  import skimage.data
  from convjax.analysis import plots
  from convjax.nn import convolution_math
  photo = skimage.data.camera().astype(np.float32) / 255  # 512x512 grayscale.
  images, titles = [photo], ['original']
  for name, kernel in convolution_math.KERNELS.items():
    filtered = np.asarray(convolution_math.apply_kernel(photo, kernel))
    # Kernels summing to zero respond with signed edges: draw their magnitude, as the classic
    # tables do; the others are images in their own right.
    zero_sum = abs(float(np.sum(kernel))) < 1e-6
    magnitude = np.abs(filtered)
    images.append(np.minimum(magnitude / np.percentile(magnitude, 99), 1) if zero_sum
                  else np.clip(filtered, 0, 1))  # Edges scaled so the strongest 1% saturate.
    titles.append(f'{name} (|out|)' if zero_sum else name)
  path = os.path.join(out, 'kernels.png')
  plots.image_grid(images, titles, path, columns=4, size=2.6,
                   suptitle='Classic 3x3 kernels, cross-correlated with a photograph')
  return path


def draw_filters(saved, out: str) -> str:
  """saved: a saved_run.SavedModel."""
  from convjax.analysis import plots, visualize
  path = os.path.join(out, 'filters.png')
  if saved.info.modality == 'text':  # Filters over bytes: the string each one looks for.
    layer, weights = visualize.byte_filters(saved.model, saved.variables, saved.input_shape)
    strings = visualize.preferred_strings(weights)
    plots.text_table([f'{f:3d} {s!r}' for f, s in enumerate(strings)], path,
                     f'{saved.config.model} {layer}: the {weights.shape[0]} bytes each of its '
                     f'{len(strings)} filters responds to most (step {saved.step})',
                     columns=4)
    return path
  layer, kernel = visualize.first_conv_filters(saved.model, saved.variables, saved.input_shape)
  if kernel.ndim == 5:  # A 3-D net's filters: each one's kernel frames side by side.
    plots.image_grid(visualize.filter_images(kernel), [f'{f}' for f in range(kernel.shape[-1])],
                     path, columns=8, symmetric=True,
                     suptitle=f'{saved.config.model} {layer}: {kernel.shape[-1]} learned '
                              f"{'x'.join(map(str, kernel.shape[:3]))} filters, time across "
                              f'(step {saved.step})')
    return path
  if kernel.ndim == 3:  # A 1-D net's filters on the waveform: a learned filterbank.
    from convjax.data import speech
    peaks = visualize.peak_frequencies(kernel, speech.SAMPLE_RATE)
    order = np.argsort(peaks, kind='stable')
    plots.signal_grid([kernel[:, 0, f] for f in order],
                      [f'{f}: {peaks[f]:.0f} Hz' for f in order], path, columns=16, size=1.0,
                      suptitle=f'{saved.config.model} {layer}: {kernel.shape[-1]} learned '
                               f'{kernel.shape[0]}-sample filters by the frequency each passes '
                               f'best (step {saved.step})')
    return path
  plots.image_grid(visualize.filter_images(kernel),
                   [f'{i}' for i in range(kernel.shape[-1])], path, columns=8,
                   symmetric=kernel.shape[2] == 1,
                   suptitle=f'{saved.config.model} {layer}: {kernel.shape[-1]} learned '
                            f"{'x'.join(map(str, kernel.shape[:2]))} filters (step {saved.step})")
  return path


def draw_feature_maps(saved, image, title: str, out: str) -> str:
  """image: an example of saved.input_shape (uint8 [h, w, c], int16 [samples, 1]),
  preprocessed as for evaluation."""
  from convjax.analysis import plots, visualize
  stages = visualize.feature_maps(saved.model, saved.variables, saved.normalize(image[None])[0])
  stages = [('input', image.astype('float32'))] + stages
  path = os.path.join(out, 'feature_maps.png')
  plots.feature_rows(stages, path, time_across=saved.info.modality == 'audio',
                     suptitle=f'{saved.config.model}: {title}, stage by stage '
                              + ('(one map each, frame by frame)' if image.ndim == 4
                                 else '(first 16 maps)'))
  return path


def _boxes_of(run, index: int) -> list:
  """Test scene `index`'s true boxes (x, y, w, h)."""
  boxes, classes = run.test.targets['boxes'][index], run.test.targets['classes'][index]
  return boxes[classes >= 0].tolist()


def draw_pyramid(saved, image, title: str, out: str) -> str:
  """A detector's view of one scene uint8 [h, w, c]: its feature pyramid level by level (first
  16 maps each), then the heatmap of object centres, a map per class."""
  import jax
  from convjax.analysis import plots
  outputs, pyramid = saved.apply(image[None], return_pyramid=True)
  strides = [image.shape[0] / level.shape[1] for level in pyramid]  # Each level's own.
  stages = [('input', image.astype('float32'))]
  stages += [(f'pyramid level {i} (stride {s:g})', np.asarray(level[0]))
             for i, (level, s) in enumerate(zip(pyramid, strides))]
  stages.append(('centre heatmap, a map per class (sigmoid)',
                 np.asarray(jax.nn.sigmoid(outputs['heatmap'][0]))))
  path = os.path.join(out, 'pyramid.png')
  plots.feature_rows(stages, path, suptitle=f'{saved.config.model} feature pyramid and CenterNet '
                                            f'heatmap: {title} (first 16 maps)')
  return path


def draw_detections(saved, image, title: str, truth, out: str) -> str:
  """The boxes a detector finds in one scene (scores of at least 0.3), the true ones dashed."""
  from convjax.analysis import plots
  from convjax.deploy import inference
  (found,) = inference.detect_images(saved, image[None], score_threshold=0.3)
  path = os.path.join(out, 'detections.png')
  plots.detections(image[..., 0] if image.shape[-1] == 1 else image, found, path,
                   title=f'{saved.config.model}: {title}, scores >= 0.3'
                         + (' (true boxes dashed)' if truth else ''), truth=truth)
  return path


def draw_detection_curves(saved, out: str) -> list[str]:
  """loss.png (training) and ap.png (COCO AP and AP50 of each evaluation)."""
  from convjax.analysis import plots
  from convjax.training import saved_run
  curves = saved_run.read_curves(saved.workdir, ('train_loss', 'test_AP', 'test_AP50'))
  name = f'{saved.config.model} on {saved.config.dataset}'
  paths = [os.path.join(out, 'loss.png'), os.path.join(out, 'ap.png')]
  plots.curves({'train': curves['train_loss']}, 'step', 'loss', f'{name}: loss', paths[0])
  plots.curves({'AP': curves['test_AP'], 'AP50': curves['test_AP50']}, 'step', 'COCO AP',
               f'{name}: test AP', paths[1])
  return paths


def draw_curves(saved, out: str) -> list[str]:
  from convjax.analysis import plots
  from convjax.training import saved_run
  curves = saved_run.read_curves(saved.workdir)
  paths = [os.path.join(out, 'loss.png'), os.path.join(out, 'accuracy.png')]
  name = f'{saved.config.model} on {saved.config.dataset}'
  for path, metric in zip(paths, ('loss', 'accuracy')):
    plots.curves({split: curves[f'{split}_{metric}'] for split in ('train', 'test')}, 'step',
                 metric, f'{name}: {metric}', path)
  return paths


def draw_predictions(run, num_wrong: int, out: str) -> list[str]:
  from convjax.analysis import plots, visualize
  probabilities, _ = run.predict()
  labels, predictions = run.test.labels, probabilities.argmax(-1)
  names = run.label_names
  counts = visualize.confusion_matrix(labels, predictions, len(names))
  accuracy = float((labels == predictions).mean())
  paths = [os.path.join(out, 'confusion.png'), os.path.join(out, 'confidently_wrong.png')]
  plots.matrix(counts, names, 'predicted', 'true',
               f'{run.config.model}: test accuracy {accuracy:.4f} ({len(labels)} examples)',
               paths[0])
  wrong = visualize.confidently_wrong(probabilities, labels, num_wrong)
  if run.info.modality == 'text':
    from convjax.data import text
    plots.text_table([f'#{i} {names[labels[i]]} -> {names[predictions[i]]} '
                      f'{probabilities[i, predictions[i]]:.2f}: {text.decode(run.test.images[i])[:70]!r}'
                      for i in wrong], paths[1], 'Most confidently wrong: true -> predicted, '
                      'probability: text')
    return paths
  plots.image_grid([_picture(run, run.test.images[i]) for i in wrong],
                   [f'#{i} {names[labels[i]]}\n-> {names[predictions[i]]} '
                    f'{probabilities[i, predictions[i]]:.2f}' for i in wrong], paths[1], columns=8,
                   size=1.6, suptitle='Most confidently wrong: true -> predicted, probability')
  return paths


def _picture(run, example: np.ndarray) -> np.ndarray:
  """A test example as a picture: an image as it is, a sound as its log-mel spectrogram
  [mels, frames] (pitch up, time across), a clip as its first and last frames."""
  if run.info.modality == 'video':  # First and last frames, a gap between them.
    gap = np.zeros((example.shape[1], 4), example.dtype)
    return np.concatenate([example[0, ..., 0], gap, example[-1, ..., 0]], axis=1)
  if run.info.modality == 'audio':
    from convjax.nn import spectrogram
    waveform = example[None].astype(np.float32) / 32768
    return np.asarray(spectrogram.log_mel(waveform))[0, ..., 0].T[::-1]
  return example.squeeze(-1) if example.shape[-1] == 1 else example


if __name__ == '__main__':
  cli.run(main)

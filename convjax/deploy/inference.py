"""Classifying files with a workdir's model: images of any size or mode, WAV files, clips saved
as NumPy arrays, or lines of text, in; the top classes by name out.

Each image goes through its dataset's evaluation preprocessing: greyscale or RGB to match the
model's channels, then, for streamed (ImageNet-size) datasets, the shorter side resized to
size / eval_crop_ratio and the central square cropped, as evaluation does; for in-memory datasets
a resize to the training images' height and width. Each WAV file is read as mono, resampled to
the model's rate where it differs (saying so) and centred in the clip length the model was trained
on (convjax/data/speech.py). Each clip (.npy, uint8 [frames, height, width, channels] or
[frames, height, width]) must have the model's shape. A text becomes its UTF-8 bytes
(convjax/data/text.py: empty texts, control characters and texts longer than the model reads are
refused). Then the dataset's normalisation.

A detector's workdir (a detection dataset) finds objects instead (`detect`): each image is resized
to the scenes' size, and its boxes are scaled back to the file's own pixels.
"""
import numpy as np
from PIL import Image, UnidentifiedImageError

import jax

from convjax import errors
from convjax.data import scenes, speech, streaming, text
from convjax.models import detection as detection_model
from convjax.training import coco, saved_run


class ImageError(errors.UserError, ValueError):
  """An image file that cannot be read."""


class ClipError(errors.UserError, ValueError):
  """A clip file that cannot be read, or of the wrong shape."""


def read_image(path: str, input_shape: tuple[int, int, int], streamed: bool,
               crop_ratio: float = 0.875) -> np.ndarray:
  """An image file -> uint8 [height, width, channels] of input_shape, preprocessed for evaluation."""
  height, width, channels = input_shape
  try:
    with Image.open(path) as image:
      image = image.convert('L' if channels == 1 else 'RGB')
      pixels = np.asarray(image, np.uint8).reshape(image.height, image.width, channels)
  except UnidentifiedImageError:
    raise ImageError(f"cannot read image '{path}': not an image format Pillow decodes") from None
  except (OSError, ValueError) as e:  # Missing, unreadable or truncated files.
    reason = getattr(e, 'strerror', None) or str(e)
    raise ImageError(f"cannot read image '{path}': {reason}") from None
  if streamed:
    return streaming.centre_crop(pixels, height, crop_ratio)
  return streaming.resize(pixels, height, width)


def top_classes(probabilities: np.ndarray, names: tuple[str, ...], k: int) -> list[list[dict]]:
  """probabilities [n, classes] -> per image, the k likeliest {'class', 'index', 'probability'}."""
  order = np.argsort(-probabilities, axis=1, kind='stable')[:, :k]
  return [[{'class': names[i], 'index': int(i), 'probability': float(row[i])} for i in indices]
          for row, indices in zip(probabilities, order)]


def read_audio(path: str, input_shape: tuple[int, int]) -> tuple[np.ndarray, str]:
  """A WAV file -> (int16 [samples, 1] of input_shape, a note: '' or why it was resampled)."""
  waveform, note = speech.read_wav(path, speech.SAMPLE_RATE)
  return speech.to_int16(speech.fit_length(waveform, input_shape[0]))[:, None], note


def read_clip(path: str, input_shape: tuple[int, int, int, int]) -> np.ndarray:
  """A clip saved with numpy.save -> uint8 [frames, height, width, channels] of input_shape.

  Takes uint8 arrays [frames, height, width, channels], or [frames, height, width] for one
  channel; refuses any other shape, dtype or file in one sentence.
  """
  try:
    with open(path, 'rb') as f:
      numpy_file = f.read(6) == b'\x93NUMPY'  # numpy.load would try to unpickle anything else.
    clip = np.load(path, allow_pickle=False) if numpy_file else None
  except (OSError, ValueError) as e:
    reason = getattr(e, 'strerror', None) or str(e)
    raise ClipError(f"cannot read clip '{path}' as a NumPy .npy array: {reason}") from None
  if clip is None:
    raise ClipError(f"cannot read clip '{path}': not a NumPy .npy file (save clips with "
                    'numpy.save)')
  if clip.ndim == len(input_shape) - 1 and input_shape[-1] == 1:
    clip = clip[..., None]
  frames, height, width, channels = input_shape
  if clip.dtype != np.uint8 or clip.shape != tuple(input_shape):
    raise ClipError(f"clip '{path}' is {clip.dtype} {list(clip.shape)}; the model takes uint8 "
                    f'clips of {frames} frames of {height}x{width} with {channels} channel(s), '
                    f'[{frames}, {height}, {width}, {channels}]')
  return clip


def read_examples(saved: saved_run.SavedModel, paths: list[str]) -> tuple[np.ndarray, list[str]]:
  """Every file as the model's example, stacked [n, *input_shape], and the notes made on the way.
  Reads every file before returning, so one unreadable file stops the whole call. For a text
  model, `paths` are the texts themselves."""
  if saved.info.modality == 'text':
    return np.stack([text.encode(t, saved.input_shape[0], f'text {i + 1}')
                     for i, t in enumerate(paths)]), []
  if saved.info.modality == 'video':
    return np.stack([read_clip(p, saved.input_shape) for p in paths]), []
  if saved.info.modality == 'audio':
    read = [read_audio(p, saved.input_shape) for p in paths]
    return np.stack([example for example, _ in read]), [note for _, note in read if note]
  streamed = saved.info.streaming
  return np.stack([read_image(p, saved.input_shape, streamed, saved.config.eval_crop_ratio)
                   for p in paths]), []


def classify(saved: saved_run.SavedModel, paths: list[str], top_k: int = 5,
             notes: list | None = None) -> list[dict]:
  """Every file (or text) through `saved`'s model: [{'image', 'audio', 'clip' or 'text': path,
  'top_k': [...]}], best first. Appends to `notes` what reading changed (resampling)."""
  images, read_notes = read_examples(saved, paths)
  if notes is not None:
    notes += read_notes
  probabilities = np.asarray(jax.nn.softmax(jax.jit(saved.apply)(images), axis=-1))
  names = saved.label_names
  if len(names) != probabilities.shape[1]:  # A model converted with another number of classes.
    names = tuple(str(i) for i in range(probabilities.shape[1]))
  key = {'audio': 'audio', 'video': 'clip', 'text': 'text'}.get(saved.info.modality, 'image')
  return [{key: path, 'top_k': top}
          for path, top in zip(paths, top_classes(probabilities, names, top_k))]


def _image_size(path: str) -> tuple[int, int]:
  """(height, width) of an image file, which read_image has already opened successfully."""
  with Image.open(path) as image:
    return image.height, image.width


def detect(saved: saved_run.SavedModel, paths: list[str], score_threshold: float,
           max_detections: int = 100) -> list[dict]:
  """Every image file through a detector: [{'image': path, 'width', 'height', 'detections':
  [{'class', 'category_id', 'bbox' (x, y, w, h in the file's pixels), 'score'}]}], best first,
  keeping scores >= score_threshold (in [0, 1])."""
  if not 0 <= score_threshold <= 1:
    raise errors.InvalidValueError(f'the score threshold must be in [0, 1], got {score_threshold}')
  images, _ = read_examples(saved, paths)
  results = []
  for path, found in zip(paths, detect_images(saved, images, score_threshold, max_detections)):
    height, width = _image_size(path)
    scale = np.array([width / images.shape[2], height / images.shape[1]] * 2)
    for detection in found:
      box = scenes.clip_boxes(np.array(detection['bbox']) * scale, width, height)
      detection['bbox'] = [round(float(v), 3) for v in box]
    results.append({'image': path, 'width': width, 'height': height, 'detections': found})
  return results


def detect_images(saved: saved_run.SavedModel, images: np.ndarray, score_threshold: float,
                  max_detections: int = 100) -> list[list[dict]]:
  """A detector's boxes in uint8 images [n, h, w, c] of its input shape: per image, [{'class',
  'category_id', 'bbox' (x, y, w, h in the images' pixels), 'score'}], best first, keeping scores
  >= score_threshold."""
  outputs = jax.jit(saved.apply)(images)
  found = detection_model.decode(outputs, detection_model.output_stride(images, outputs),
                                 max_detections)
  per_image = []
  for boxes, scores, classes in zip(*map(np.asarray, found)):
    detections = coco.detections_json([boxes], [scores], [classes],
                                      score_threshold=score_threshold)
    for detection in detections:
      del detection['image_id']
      detection['class'] = saved.label_names[detection['category_id'] - 1]
    per_image.append(detections)
  return per_image

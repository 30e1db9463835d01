"""Classifying image files with a workdir's model: any size or mode in, the top classes by name out.

Each file goes through its dataset's evaluation preprocessing: greyscale or RGB to match the
model's channels, then, for streamed (ImageNet-size) datasets, the shorter side resized to
size / eval_crop_ratio and the central square cropped, as evaluation does; for in-memory datasets
a resize to the training images' height and width. Then the dataset's normalisation.
"""
import numpy as np
from PIL import Image, UnidentifiedImageError

import jax

from convjax import errors
from convjax.data import streaming
from convjax.training import saved_run


class ImageError(errors.UserError, ValueError):
  """An image file that cannot be read."""


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


def classify(saved: saved_run.SavedModel, paths: list[str], top_k: int = 5) -> list[dict]:
  """Every image file through `saved`'s model: [{'image': path, 'top_k': [...]}], best first.
  Reads every file before classifying any, so one unreadable file stops the whole call."""
  streamed = saved.info.streaming
  images = np.stack([read_image(p, saved.input_shape, streamed, saved.config.eval_crop_ratio)
                     for p in paths])
  probabilities = np.asarray(jax.nn.softmax(jax.jit(saved.apply)(images), axis=-1))
  names = saved.label_names
  if len(names) != probabilities.shape[1]:  # A model converted with another number of classes.
    names = tuple(str(i) for i in range(probabilities.shape[1]))
  return [{'image': path, 'top_k': top}
          for path, top in zip(paths, top_classes(probabilities, names, top_k))]

"""Detection datasets of real photographs from TFDS, streamed: PASCAL VOC 2007 and COCO 2017.

Their images vary in size and hold any number of objects, so each example becomes a fixed shape
on the host, as streaming.py does for classification:
- evaluation: letterboxing. The longer side is resized to image_size and the rest padded with
  the mean pixel at the bottom and right, so a box found at x in the input is at x / scale in the
  original image, scale = image_size / max(height, width). COCO's AP is computed there, against
  the annotations in the original pixels (`detection_truth`).
- training: the same letterbox zoomed by a factor drawn from augment.scene_scale and shifted to
  a random place (CenterNet's random scale and crop), boxes cut to the visible part and dropped
  below scenes.MIN_VISIBLE of their area, then a random horizontal flip.

Annotations are padded to max_objects per image as scenes.py pads its scenes: boxes float32
[max_objects, 4] (x, y, w, h in input pixels) and classes int32 [max_objects], -1 for padding.
COCO's crowd regions and VOC's "difficult" objects are not trained on; in the ground truth they
are COCO's iscrowd regions, which pycocotools neither rewards nor penalises (VOC's own metric
ignores difficult objects the same way).
"""
import numpy as np
from PIL import Image

from convjax import parallel
from convjax.data import datasets, scenes, streaming

DEFAULT_IMAGE_SIZE = 512  # CenterNet's training resolution (Zhou et al. 2019, section 5).
DEFAULT_MAX_OBJECTS = 100  # COCO's images hold up to 93 annotated objects.


def tfds_objects(example: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """A TFDS detection example's objects -> boxes float32 [n, 4] (x, y, w, h in the image's
  pixels), classes int32 [n] and ignore bool [n] (COCO's is_crowd, VOC's is_difficult).

  TFDS's boxes are (ymin, xmin, ymax, xmax) as fractions of the image's height and width.
  """
  height, width = np.asarray(example['image']).shape[:2]
  objects = example['objects']
  fractions = np.asarray(objects['bbox'], np.float32).reshape(-1, 4)
  classes = np.asarray(objects['label'], np.int32).reshape(-1)
  ignore = np.asarray(objects.get('is_crowd', objects.get('is_difficult', ())), bool).reshape(-1)
  if not len(fractions) == len(classes) == len(ignore):
    raise datasets.DatasetNotFoundError(
        f'an example has {len(fractions)} boxes, {len(classes)} labels and {len(ignore)} '
        'crowd/difficult flags; a detection example needs one of each per object')
  ymin, xmin, ymax, xmax = (fractions * [height, width, height, width]).T
  boxes = np.stack([xmin, ymin, xmax - xmin, ymax - ymin], -1).astype(np.float32)
  return boxes, classes, ignore


def place(image: np.ndarray, size: int, scale: float, offset: tuple[int, int],
          fill: np.ndarray) -> np.ndarray:
  """uint8 [h, w, 3] resized by `scale` and put with its top-left corner at offset (x, y) on a
  size x size canvas of `fill`, cut where it overhangs -> uint8 [size, size, 3]."""
  height, width = image.shape[:2]
  new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
  resized = streaming.resize(image, new_h, new_w)
  canvas = np.empty((size, size, 3), np.uint8)
  canvas[...] = fill
  x, y = offset
  top, left = max(y, 0), max(x, 0)
  bottom, right = min(y + new_h, size), min(x + new_w, size)
  if bottom > top and right > left:
    canvas[top:bottom, left:right] = resized[top - y:bottom - y, left - x:right - x]
  return canvas


def letterbox_scale(height: int, width: int, size: int) -> float:
  """The factor that fits an image's longer side to `size`."""
  return size / max(height, width)


def zoom_with_boxes(image: np.ndarray, boxes: np.ndarray, classes: np.ndarray,
                    rng: np.random.Generator, size: int, scale_range: tuple[float, float],
                    fill: np.ndarray):
  """Training's geometry for one example: the letterboxed image zoomed by a factor drawn
  uniformly from scale_range and placed at a random offset (a crop when it is larger than the
  canvas, a margin when smaller).

  image uint8 [h, w, 3]; boxes [n, 4] (x, y, w, h) in its pixels; classes int32 [n].
  Returns image uint8 [size, size, 3], and the boxes (in the new pixels, cut to the canvas) and
  classes of the objects that keep at least scenes.MIN_VISIBLE of their area.
  """
  height, width = image.shape[:2]
  scale = letterbox_scale(height, width, size) * rng.uniform(*scale_range)
  new_h, new_w = round(height * scale), round(width * scale)
  offset_x = int(rng.integers(min(0, size - new_w), max(0, size - new_w) + 1))
  offset_y = int(rng.integers(min(0, size - new_h), max(0, size - new_h) + 1))
  placed = boxes * scale + np.array([offset_x, offset_y, 0, 0], np.float32)
  clipped = np.asarray(scenes.clip_boxes(placed, size, size))
  keep = scenes.mostly_visible(clipped, placed) & (clipped[:, 2] > 0) & (clipped[:, 3] > 0)
  return (place(image, size, scale, (offset_x, offset_y), fill), clipped[keep], classes[keep])


def flip(image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The mirror image [h, w, c] and its boxes [n, 4] (x, y, w, h)."""
  return image[:, ::-1], np.asarray(scenes.mirror_boxes(boxes, image.shape[1]))


def pad_objects(boxes: np.ndarray, classes: np.ndarray, count: int):
  """boxes [n, 4] and classes [n] -> boxes float32 [count, 4] and classes int32 [count], -1 past
  the objects; the first `count` objects are kept where there are more."""
  padded_boxes = np.zeros((count, 4), np.float32)
  padded_classes = np.full((count,), -1, np.int32)
  n = min(len(boxes), count)
  padded_boxes[:n], padded_classes[:n] = boxes[:n], classes[:n]
  return padded_boxes, padded_classes


class DetectionStreamingPipeline(streaming.StreamingPipeline):
  """A `pipeline.Pipeline` of a TFDS detection dataset: batches of image uint8
  [n, size, size, 3], label int32 [n] (objects in the image), boxes float32 [n, max_objects, 4]
  and classes int32 [n, max_objects]; evaluation batches add mask [n]."""

  def __init__(self, dataset: datasets.StreamingDataset, dp: parallel.DataParallel,
               batch_size: int, eval_batch_size: int, seed: int,
               image_size: int = DEFAULT_IMAGE_SIZE, flip: bool = True,
               scale_range: tuple[float, float] = (1.0, 1.0),
               max_objects: int = DEFAULT_MAX_OBJECTS, num_workers: int = 8, prefetch: int = 2):
    super().__init__(dataset, dp, batch_size, eval_batch_size, seed, image_size, flip,
                     num_workers=num_workers, prefetch=prefetch)
    self._scale_range, self._max_objects = tuple(scale_range), max_objects
    self._truth = None

  def train_example(self, index: int, step: int, position: int) -> dict:
    """Example `index` zoomed, placed and flipped by the draws of (seed, step, position)."""
    rng = np.random.default_rng([self._seed, step, position])
    example = self._dataset.train[int(index)]
    image = streaming.rgb(example['image'])
    boxes, classes, ignore = tfds_objects(example)
    image, boxes, classes = zoom_with_boxes(image, boxes[~ignore], classes[~ignore], rng,
                                            self._size, self._scale_range, self._fill)
    if self._flip and rng.random() < 0.5:
      image, boxes = flip(image, boxes)
    return self._example(image, boxes, classes)

  def eval_example(self, index: int) -> dict:
    """Example `index` letterboxed; its boxes in the input's pixels."""
    example = self._dataset.test[int(index)]
    image = streaming.rgb(example['image'])
    boxes, classes, ignore = tfds_objects(example)
    scale = letterbox_scale(*image.shape[:2], self._size)
    image = place(image, self._size, scale, (0, 0), self._fill)
    return self._example(image, boxes[~ignore] * scale, classes[~ignore])

  def _example(self, image, boxes, classes) -> dict:
    padded_boxes, padded_classes = pad_objects(boxes, classes, self._max_objects)
    return {'image': image, 'label': np.int32(min(len(boxes), self._max_objects)),
            'boxes': padded_boxes, 'classes': padded_classes}

  def detection_truth(self) -> tuple[dict, np.ndarray]:
    """The evaluation split's objects in COCO's JSON format (scenes.coco_json), each in its
    image's own pixels, crowd and difficult objects as iscrowd regions; and each image's
    letterbox scale, float32 [num_test_examples]: detections divided by it are in those pixels."""
    sizes, objects = zip(*self._evaluation_objects())
    scales = np.array([letterbox_scale(*size, self._size) for size in sizes], np.float32)
    return scenes.coco_json(sizes, objects, self.info.label_names), scales

  def _evaluation_objects(self) -> list:
    """((height, width), tfds_objects) of each evaluation image, read once (a pass over the
    split, on the reading threads)."""
    if self._truth is None:
      def read(index: int):
        example = self._dataset.test[index]
        return np.asarray(example['image']).shape[:2], tfds_objects(example)
      self._truth = list(self._pool.map(read, range(self.num_test_examples)))
    return self._truth

"""Fashion-MNIST scenes: a detection dataset made offline from the real Fashion-MNIST images.

Each scene is a CANVAS x CANVAS grey canvas (uint8 [128, 128, 1]) holding 1 to MAX_ITEMS real
Fashion-MNIST items, each scaled by a factor drawn log-uniformly from SCALES (21 to 70 pixels a
side) and placed at random where its box overlaps no earlier box by an IoU above MAX_IOU; items
are drawn over each other by taking the brighter pixel. A few clutter fragments (small crops of
other items, too small and partial to be a garment) are scattered where they touch no box, so that
"bright pixels" alone is not "an object". Each box is the tight box of its item's ink (pixels of at
least INK after scaling), in COCO's [x, y, width, height] pixels.

The layouts are synthetic; the items are real. Training scenes are made from Fashion-MNIST's
training images, the fixed test set from its test images, each by a fixed seed, so every machine
has the same scenes and no test item appears in training.

Annotations are padded to MAX_ITEMS per scene: boxes float32 [n, MAX_ITEMS, 4] (x, y, w, h) and
classes int32 [n, MAX_ITEMS], -1 marking padding. `coco_annotations` writes a split in COCO's
JSON format, which pycocotools evaluates.
"""
import jax.numpy as jnp
import numpy as np
from PIL import Image

from convjax import errors

CANVAS = 128
ITEM = 28  # Fashion-MNIST's side.
MAX_ITEMS = 6
SCALES = (0.75, 2.5)
MAX_IOU = 0.2
INK = 32  # A pixel at least this bright belongs to its item's box.
MAX_CLUTTER = 4
CLUTTER_SIDE = (5, 9)  # Clutter fragments: crops of this many pixels a side (upper exclusive).
NUM_SCENES = {'train': 12_000, 'test': 1_000}
_SEEDS = {'train': 10, 'test': 11}
_PLACEMENT_TRIES = 30
CLASS_NAMES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt',
               'Sneaker', 'Bag', 'Ankle boot')


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
  """Intersection over union of one [x, y, w, h] box with boxes [k, 4] -> [k]."""
  x0, y0 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
  x1 = np.minimum(box[0] + box[2], boxes[:, 0] + boxes[:, 2])
  y1 = np.minimum(box[1] + box[3], boxes[:, 1] + boxes[:, 3])
  inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
  return inter / (box[2] * box[3] + boxes[:, 2] * boxes[:, 3] - inter)


def clip_boxes(boxes, width: int, height: int):
  """Boxes [..., 4] (x, y, w, h) cut to the part inside a width x height image (NumPy or JAX
  arrays; a box wholly outside becomes one of zero width or height)."""
  corners = jnp.concatenate([boxes[..., :2], boxes[..., :2] + boxes[..., 2:]], -1)
  corners = jnp.clip(corners, 0, jnp.array([width, height, width, height], jnp.float32))
  return jnp.concatenate([corners[..., :2], corners[..., 2:] - corners[..., :2]], -1)


def mirror_boxes(boxes, width: int):
  """Boxes [..., 4] (x, y, w, h) of an image `width` pixels wide, moved to its mirror image
  (NumPy or JAX arrays)."""
  return jnp.concatenate([width - boxes[..., :1] - boxes[..., 2:3], boxes[..., 1:]], -1)


# A box keeps its object after a crop when at least this fraction of it stays in the image.
MIN_VISIBLE = 0.5


def mostly_visible(clipped, placed):
  """Whether each object keeps at least MIN_VISIBLE of its box's area: clipped [..., 4], the
  boxes cut to the image (clip_boxes), of placed [..., 4] -> bool [...] (NumPy or JAX)."""
  return clipped[..., 2] * clipped[..., 3] >= MIN_VISIBLE * placed[..., 2] * placed[..., 3]


def scaled_item(image: np.ndarray, scale: float) -> np.ndarray:
  """A 28x28 item [28, 28] uint8 resized by `scale` (bilinear) and cut to its ink's tight box."""
  side = max(2, round(ITEM * scale))
  item = np.asarray(Image.fromarray(image).resize((side, side), Image.BILINEAR))
  rows, columns = np.flatnonzero((item >= INK).any(1)), np.flatnonzero((item >= INK).any(0))
  return item[rows[0]:rows[-1] + 1, columns[0]:columns[-1] + 1]


def _place(rng: np.random.Generator, item: np.ndarray, boxes: list, max_iou: float):
  """A random [x, y, w, h] for `item` inside the canvas overlapping no box in `boxes` by more than
  max_iou (touching none where max_iou is 0), or None after _PLACEMENT_TRIES tries."""
  h, w = item.shape
  for _ in range(_PLACEMENT_TRIES):
    box = np.array([rng.integers(CANVAS - w + 1), rng.integers(CANVAS - h + 1), w, h], np.float32)
    if not boxes or iou(box, np.array(boxes)).max() <= max_iou:
      return box
  return None


def _draw(canvas: np.ndarray, item: np.ndarray, box: np.ndarray) -> None:
  x, y, w, h = box.astype(int)
  canvas[y:y + h, x:x + w] = np.maximum(canvas[y:y + h, x:x + w], item)


def make_scene(rng: np.random.Generator, images: np.ndarray, labels: np.ndarray):
  """One scene from uint8 items [n, 28, 28] and their labels [n] -> (canvas uint8 [128, 128],
  boxes float32 [k, 4], classes int32 [k]) with 1 <= k <= MAX_ITEMS."""
  canvas = np.zeros((CANVAS, CANVAS), np.uint8)
  boxes, classes = [], []
  for _ in range(rng.integers(1, MAX_ITEMS + 1)):
    index = rng.integers(len(images))
    item = scaled_item(images[index], float(np.exp(rng.uniform(*np.log(SCALES)))))
    box = _place(rng, item, boxes, MAX_IOU)
    if box is not None:
      _draw(canvas, item, box)
      boxes.append(box)
      classes.append(int(labels[index]))
  for _ in range(rng.integers(MAX_CLUTTER + 1)):
    side = rng.integers(*CLUTTER_SIDE)
    y, x = rng.integers(ITEM - side, size=2)
    fragment = images[rng.integers(len(images))][y:y + side, x:x + side]
    box = _place(rng, fragment, boxes, 0.0)
    if box is not None and fragment.max() >= INK:
      _draw(canvas, fragment, box)  # Not appended: clutter is not an object.
  return canvas, np.array(boxes, np.float32).reshape(-1, 4), np.array(classes, np.int32)


def make_scenes(images: np.ndarray, labels: np.ndarray, count: int, seed: int):
  """`count` scenes from uint8 images [n, 28, 28, 1] and labels [n].

  Returns images uint8 [count, 128, 128, 1], boxes float32 [count, MAX_ITEMS, 4] (x, y, w, h)
  and classes int32 [count, MAX_ITEMS], -1 (and zero boxes) past each scene's items. Scene i
  depends only on (seed, i), not on count.
  """
  canvases = np.zeros((count, CANVAS, CANVAS, 1), np.uint8)
  boxes = np.zeros((count, MAX_ITEMS, 4), np.float32)
  classes = np.full((count, MAX_ITEMS), -1, np.int32)
  for i in range(count):
    canvas, scene_boxes, scene_classes = make_scene(np.random.default_rng([seed, i]),
                                                    images[..., 0], labels)
    canvases[i, ..., 0] = canvas
    boxes[i, :len(scene_boxes)], classes[i, :len(scene_classes)] = scene_boxes, scene_classes
  return canvases, boxes, classes


def check_annotations(boxes: np.ndarray, classes: np.ndarray, size: tuple[int, int],
                      num_classes: int) -> None:
  """Raises one sentence for the first bad box among boxes [n, k, 4] (x, y, w, h) and classes
  [n, k] (-1: padding) of images size (height, width): zero area, outside the image, or an
  unknown class. A scene with no objects is valid: every class -1."""
  height, width = size
  real = classes >= 0
  problems = {
      'has zero area': real & ((boxes[..., 2] <= 0) | (boxes[..., 3] <= 0)),
      f'lies outside the {width}x{height} image': real & (
          (boxes[..., 0] < 0) | (boxes[..., 1] < 0) |
          (boxes[..., 0] + boxes[..., 2] > width) | (boxes[..., 1] + boxes[..., 3] > height)),
      f'has a class outside 0..{num_classes - 1}': classes >= num_classes,
  }
  for problem, bad in problems.items():
    if bad.any():
      image, slot = np.argwhere(bad)[0]
      raise errors.InvalidValueError(
          f'box {slot} of image {image}, {boxes[image, slot].tolist()}, {problem}')


def coco_json(sizes, objects, class_names) -> dict:
  """Ground truth in COCO's JSON format: image ids 1..n, category ids 1..C (COCO's ids start at
  1; class c is category c + 1), area = w * h.

  sizes: each image's (height, width); objects: each image's (boxes [k, 4] (x, y, w, h) in its
  pixels, classes [k], crowd [k] bool: regions neither rewarded nor penalised, COCO's iscrowd).
  """
  images, annotations = [], []
  for image_id, ((height, width), (boxes, classes, crowd)) in enumerate(zip(sizes, objects), 1):
    images.append({'id': image_id, 'height': int(height), 'width': int(width)})
    for box, label, is_crowd in zip(boxes, classes, crowd):
      x, y, w, h = (float(v) for v in box)
      annotations.append({'id': len(annotations) + 1, 'image_id': image_id,
                          'category_id': int(label) + 1, 'bbox': [x, y, w, h],
                          'area': w * h, 'iscrowd': int(is_crowd)})
  return {'images': images, 'annotations': annotations,
          'categories': [{'id': c + 1, 'name': name} for c, name in enumerate(class_names)]}


def coco_annotations(boxes: np.ndarray, classes: np.ndarray,
                     class_names=CLASS_NAMES, size=(CANVAS, CANVAS)) -> dict:
  """A split of padded annotations (boxes [n, k, 4], classes [n, k], -1: padding) of images all
  `size` (height, width) in COCO's JSON format (coco_json), no crowds."""
  real = classes >= 0
  objects = [(b[r], c[r], np.zeros(r.sum(), bool)) for b, c, r in zip(boxes, classes, real)]
  return coco_json([size] * len(boxes), objects, class_names)


def load_fashion_mnist_scenes(info, data_dir: str | None, source: str, download: bool):
  """Fashion-MNIST scenes' train and test splits (datasets.Dataset), made from Fashion-MNIST found
  as datasets.load finds it (IDX files, Debian's package, or TFDS). Each split's labels count its
  scenes' objects; its targets are 'boxes' and 'classes' (see make_scenes)."""
  from convjax.data import datasets  # Imported here: datasets imports this module on demand.
  fashion = datasets.load('fashion_mnist', data_dir=data_dir, source=source, download=download)

  def split(name: str, images: datasets.Split) -> datasets.Split:
    canvases, boxes, classes = make_scenes(images.images, images.labels, NUM_SCENES[name],
                                           _SEEDS[name])
    check_annotations(boxes, classes, (CANVAS, CANVAS), len(CLASS_NAMES))
    return datasets.Split(canvases, (classes >= 0).sum(1).astype(np.int32),
                          {'boxes': boxes, 'classes': classes})

  return datasets.Dataset(info, split('train', fashion.train), split('test', fashion.test))

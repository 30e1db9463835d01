"""Moving Fashion-MNIST: short clips in which only motion says which item is the answer.

Each clip is FRAMES frames of a CANVAS canvas (uint8 [8, 36, 72, 1]) split into two 36x36 cells,
one real Fashion-MNIST item (28x28) in each. One item moves in a straight line at a constant
velocity of up to 2 pixels a frame per axis, bouncing off its cell's walls; the other stands still.
The label is the class of the moving item; the two items are always of different classes, drawn
from CLASSES, five kinds of garment that a small net tells apart well, so that what is hard is
the motion, not the garments.

The motion is synthetic; the images are real. Positions are chosen so that no single frame tells
which item moves: the moving item starts at a uniformly random phase of its bounce, so that its
offset in the cell has the same distribution at every frame, and the still item's offset is
drawn from that distribution too. So a
model blind to motion (one that sees frames one at a time and pools them) can at best name both
garments and guess: its accuracy is at most MOTION_BLIND_CEILING = 1/2.

Training clips are made from Fashion-MNIST's training images, test clips from its test images,
each set by a fixed seed, so the data is the same on every machine and no test image appears in
training.
"""
import numpy as np

from convjax.data import datasets

FRAMES, CELL, ITEM = 8, 36, 28
CANVAS = (CELL, 2 * CELL)
MAX_SPEED = 2  # Pixels per frame along each axis.
# Fashion-MNIST's T-shirt/top, Trouser, Sneaker, Bag and Ankle boot.
CLASSES = (0, 1, 7, 8, 9)
MOTION_BLIND_CEILING = 0.5
NUM_CLIPS = {'train': 12_000, 'test': 2_000}
_SEEDS = {'train': 0, 'test': 1}


def bounce(start: np.ndarray, velocity: np.ndarray, frames: int, limit: int) -> np.ndarray:
  """Offsets [n, frames] of points that start at `start` [n] and move `velocity` [n] a frame,
  reflecting off 0 and `limit`: a triangle wave of period 2 * limit."""
  travelled = start[:, None] + velocity[:, None] * np.arange(frames)
  phase = np.mod(travelled, 2 * limit)
  return np.where(phase <= limit, phase, 2 * limit - phase).astype(np.int64)


def make_clips(images: np.ndarray, labels: np.ndarray, count: int,
               seed: int) -> tuple[np.ndarray, np.ndarray]:
  """`count` clips from uint8 images [n, 28, 28, 1] with Fashion-MNIST labels [n].

  Returns uint8 clips [count, FRAMES, 36, 72, 1] and int32 labels [count], the index in CLASSES
  of each clip's moving item.
  """
  rng = np.random.default_rng(seed)
  by_class = [np.flatnonzero(labels == c) for c in CLASSES]
  moving_class = rng.integers(len(CLASSES), size=count)
  # A different class for the still item: shift by 1 to len - 1 places.
  still_class = (moving_class + rng.integers(1, len(CLASSES), size=count)) % len(CLASSES)
  pick = lambda classes: np.array([rng.choice(by_class[c]) for c in classes])
  moving_image, still_image = images[pick(moving_class)], images[pick(still_class)]
  limit = CELL - ITEM
  velocity = rng.integers(-MAX_SPEED, MAX_SPEED + 1, size=(count, 2))
  still = velocity == 0
  while still.all(axis=1).any():  # Every mover moves.
    redraw = still.all(axis=1)
    velocity[redraw] = rng.integers(-MAX_SPEED, MAX_SPEED + 1, size=(redraw.sum(), 2))
    still = velocity == 0
  # Phases uniform over the bounce's whole period: then every frame's offset has the same
  # distribution, which the still item's offset shares (a phase folded the same way).
  phase = lambda: rng.integers(2 * limit, size=count)
  rows = bounce(phase(), velocity[:, 0], FRAMES, limit)
  columns = bounce(phase(), velocity[:, 1], FRAMES, limit)
  still_at = np.stack([bounce(phase(), np.zeros(count, np.int64), 1, limit)[:, 0]
                       for _ in range(2)], -1)
  moving_cell = rng.integers(2, size=count)  # 0: left cell, 1: right.
  clips = np.zeros((count, FRAMES, *CANVAS, 1), np.uint8)
  for i in range(count):
    left = CELL * (1 - moving_cell[i])
    y, x = still_at[i]
    clips[i, :, y:y + ITEM, left + x:left + x + ITEM] = still_image[i]
    left = CELL * moving_cell[i]
    for t in range(FRAMES):
      y, x = rows[i, t], columns[i, t]
      clips[i, t, y:y + ITEM, left + x:left + x + ITEM] = moving_image[i]
  return clips, moving_class.astype(np.int32)


def load_moving_fashion_mnist(info: datasets.DatasetInfo, data_dir: str | None, source: str,
                              download: bool) -> datasets.Dataset:
  """Moving Fashion-MNIST's train and test clips, made from Fashion-MNIST found as
  datasets.load finds it (IDX files, Debian's package, or TFDS)."""
  fashion = datasets.load('fashion_mnist', data_dir=data_dir, source=source, download=download)
  splits = {name: datasets.Split(*make_clips(split.images, split.labels, NUM_CLIPS[name],
                                             _SEEDS[name]))
            for name, split in (('train', fashion.train), ('test', fashion.test))}
  return datasets.Dataset(info, splits['train'], splits['test'])

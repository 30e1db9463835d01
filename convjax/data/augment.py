"""Training-time augmentation of small images, per example, on the device inside jit.

Every function maps one uint8 image [height, width, channels] to another of the same shape and
takes its own PRNG key, so `augment_batch` gives each example a key derived from its position
in the global batch: the result does not depend on how the batch is split over devices.
Evaluation never augments.
"""
import dataclasses

import jax
import jax.numpy as jnp
from jax import lax

from convjax.data import randaugment, scenes


@dataclasses.dataclass(frozen=True)
class Augmentation:
  """crop_padding: zero-pad each side by this many pixels, then crop back at a random offset
  (0 = off). flip: mirror left-right with probability 1/2. cutout: side of a square set to
  the mean pixel at a random centre, clipped at the borders (DeVries & Taylor 2017; 0 = off).
  random_erasing: the probability of erasing a random rectangle (`random_erase`; 0 = off), of
  area fraction in erasing_scale and aspect ratio in erasing_ratio.
  randaugment_ops, randaugment_magnitude: RandAugment's N ops at magnitude M (randaugment;
  N = 0 is off).
  scene_scale: detection only: zoom each scene by a factor drawn log-uniformly from this range
  and crop or pad it back at a random offset, its boxes moving with it (`augment_scene`;
  (1, 1) is off). A scene's flip mirrors its boxes too."""
  crop_padding: int = 0
  flip: bool = False
  cutout: int = 0
  random_erasing: float = 0.0
  erasing_scale: tuple[float, float] = (0.02, 0.33)
  erasing_ratio: tuple[float, float] = (0.3, 3.3)
  randaugment_ops: int = 0
  randaugment_magnitude: float = 9.0
  scene_scale: tuple[float, float] = (1.0, 1.0)

  @property
  def enabled(self) -> bool:
    return bool(self.crop_padding or self.flip or self.cutout or self.random_erasing
                or self.randaugment_ops or tuple(self.scene_scale) != (1.0, 1.0))


def random_crop(key: jax.Array, image: jnp.ndarray, padding: int) -> jnp.ndarray:
  """Zero-pads [h, w, c] by `padding` on every side and crops an [h, w, c] window uniformly.

  Other examples work alike: a waveform [samples, 1] is shifted in time by up to `padding`
  samples, with silence (zero) moving in; a clip [t, h, w, c] has every frame shifted by the same
  offset (its frames stay as they are in time).
  """
  axes = min(image.ndim - 1, 2)  # The last two axes before the channels, or the one.
  kept = image.ndim - 1 - axes
  padded = jnp.pad(image, ((0, 0),) * kept + ((padding, padding),) * axes + ((0, 0),))
  offset = jax.random.randint(key, (axes,), 0, 2 * padding + 1)
  return lax.dynamic_slice(padded, (0,) * kept + (*offset, 0), image.shape)


def random_flip(key: jax.Array, image: jnp.ndarray) -> jnp.ndarray:
  """Mirrors [..., w, c] left-right (the width axis) with probability 1/2."""
  return jnp.where(jax.random.bernoulli(key), jnp.flip(image, -2), image)


def rectangle(shape: tuple[int, int], top, left, height, width) -> jnp.ndarray:
  """bool [shape]: True on rows top .. top + height - 1 and columns left .. left + width - 1;
  the parts outside the image (negative or too large corners) simply fall away."""
  rows, cols = jnp.arange(shape[0]), jnp.arange(shape[1])
  return (((rows >= top) & (rows < top + height))[:, None]
          & ((cols >= left) & (cols < left + width))[None, :])


def cutout(key: jax.Array, image: jnp.ndarray, size: int, fill: jnp.ndarray) -> jnp.ndarray:
  """Sets a size x size square of [h, w, c] to `fill` [c]; its centre is uniform over the image,
  so near the borders less than the whole square falls inside."""
  height, width, _ = image.shape
  centre = jax.random.randint(key, (2,), 0, jnp.array([height, width]))
  top_left = centre - size // 2
  inside = rectangle((height, width), top_left[0], top_left[1], size, size)
  return jnp.where(inside[..., None], fill.astype(image.dtype), image)


def random_erase(key: jax.Array, image: jnp.ndarray, probability: float,
                 scale: tuple[float, float], ratio: tuple[float, float],
                 attempts: int = 10) -> jnp.ndarray:
  """Random erasing (Zhong et al. 2020) of uint8 [h, w, c]: with `probability`, a rectangle of
  area fraction ~ U(scale) and height/width ratio ~ log-U(ratio), placed uniformly, becomes
  uniform random pixels (the paper's fill). Of `attempts` drawn rectangles the first that fits
  is used; when none fits the image is left as it is, as in the paper's retry loop."""
  height, width, _ = image.shape
  keys = jax.random.split(key, 5)
  area = height * width * jax.random.uniform(keys[0], (attempts,), minval=scale[0], maxval=scale[1])
  log_ratio = jax.random.uniform(keys[1], (attempts,), minval=jnp.log(ratio[0]),
                                 maxval=jnp.log(ratio[1]))
  rect_h = jnp.round(jnp.sqrt(area * jnp.exp(log_ratio))).astype(jnp.int32)
  rect_w = jnp.round(jnp.sqrt(area / jnp.exp(log_ratio))).astype(jnp.int32)
  fits = (rect_h >= 1) & (rect_w >= 1) & (rect_h < height) & (rect_w < width)
  first = jnp.argmax(fits)  # 0 when none fits; `erase` below is then False.
  rect_h, rect_w = rect_h[first], rect_w[first]
  top = jax.random.randint(keys[2], (), 0, height - rect_h + 1)
  left = jax.random.randint(keys[3], (), 0, width - rect_w + 1)
  noise_key, coin_key = jax.random.split(keys[4])
  noise = jax.random.randint(noise_key, image.shape, 0, 256).astype(image.dtype)
  erase = fits[first] & jax.random.bernoulli(coin_key, probability)
  inside = rectangle((height, width), top, left, rect_h, rect_w)
  return jnp.where(erase & inside[..., None], noise, image)


def augment(key: jax.Array, image: jnp.ndarray, augmentation: Augmentation,
            fill: jnp.ndarray) -> jnp.ndarray:
  """Applies crop, flip, RandAugment, cutout and random erasing, in that order (timm's) and as
  configured, to one uint8 image [h, w, c]; fill [c] is the mean pixel."""
  crop_key, flip_key, cutout_key = jax.random.split(key, 3)
  # Folded in rather than further splits, so crop, flip and cutout draw as they always have.
  erase_key, randaugment_key = jax.random.fold_in(key, 3), jax.random.fold_in(key, 4)
  if augmentation.crop_padding:
    image = random_crop(crop_key, image, augmentation.crop_padding)
  if augmentation.flip:
    image = random_flip(flip_key, image)
  if augmentation.randaugment_ops:
    image = randaugment.randaugment(randaugment_key, image, augmentation.randaugment_ops,
                                    augmentation.randaugment_magnitude, fill)
  if augmentation.cutout:
    image = cutout(cutout_key, image, augmentation.cutout, fill)
  if augmentation.random_erasing:
    image = random_erase(erase_key, image, augmentation.random_erasing,
                         augmentation.erasing_scale, augmentation.erasing_ratio)
  return image


def augment_batch(keys: jax.Array, images: jnp.ndarray, augmentation: Augmentation,
                  fill) -> jnp.ndarray:
  """keys [n, 2] (one per example), images uint8 [n, h, w, c] -> uint8 [n, h, w, c]."""
  fill = jnp.asarray(fill, images.dtype)
  return jax.vmap(lambda k, x: augment(k, x, augmentation, fill))(keys, images)


def mean_pixel(mean: tuple[float, ...]) -> tuple[int, ...]:
  """The uint8 pixel that normalises to (about) zero: cutout's fill, as in the paper, and what
  RandAugment's geometric ops move in from outside the image."""
  return tuple(int(round(m * 255)) for m in mean)


def _zoom_with_boxes(key: jax.Array, image: jnp.ndarray, boxes: jnp.ndarray, classes: jnp.ndarray,
                     scale_range: tuple[float, float]):
  """Scales image [h, w, c] by s ~ log-U(scale_range) about a random offset that keeps the
  canvas covered (s >= 1) or inside it (s < 1, the border filled with 0), and moves boxes [k, 4]
  (x, y, w, h) with it: clipped to the image, and dropped (class -1, box 0) where less than
  scenes.MIN_VISIBLE of a box stays in it."""
  height, width, _ = image.shape
  scale_key, x_key, y_key = jax.random.split(key, 3)
  s = jnp.exp(jax.random.uniform(scale_key, minval=jnp.log(scale_range[0]),
                                 maxval=jnp.log(scale_range[1])))
  # Output pixel = s * input pixel + t, with t between 0 and size - s * size.
  tx = jax.random.uniform(x_key) * (width - s * width)
  ty = jax.random.uniform(y_key) * (height - s * height)
  zoomed = jax.image.scale_and_translate(image.astype(jnp.float32), image.shape, (0, 1),
                                         jnp.stack([s, s]), jnp.stack([ty, tx]), 'linear')
  image = jnp.clip(jnp.round(zoomed), 0, 255).astype(image.dtype)
  placed = boxes * s + jnp.stack([tx, ty, 0.0, 0.0])
  moved = scenes.clip_boxes(placed, width, height)
  keep = ((classes >= 0) & scenes.mostly_visible(moved, placed) & (moved[:, 2] >= 1) &
          (moved[:, 3] >= 1))
  return image, jnp.where(keep[:, None], moved, 0.0), jnp.where(keep, classes, -1)


def augment_scene(key: jax.Array, image: jnp.ndarray, boxes: jnp.ndarray, classes: jnp.ndarray,
                  augmentation: Augmentation):
  """A detection example's zoom (augmentation.scene_scale) and flip, boxes [k, 4] (x, y, w, h)
  and classes [k] (-1: none) following the image [h, w, c]. Returns all three."""
  zoom_key, flip_key = jax.random.split(key)
  if tuple(augmentation.scene_scale) != (1.0, 1.0):
    image, boxes, classes = _zoom_with_boxes(zoom_key, image, boxes, classes,
                                             augmentation.scene_scale)
  if augmentation.flip:
    flip = jax.random.bernoulli(flip_key)
    image = jnp.where(flip, jnp.flip(image, -2), image)
    mirrored = scenes.mirror_boxes(boxes, image.shape[1])
    boxes = jnp.where(flip & (classes >= 0)[:, None], mirrored, boxes)
  return image, boxes, classes

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


@dataclasses.dataclass(frozen=True)
class Augmentation:
  """crop_padding: zero-pad each side by this many pixels, then crop back at a random offset
  (0 = off). flip: mirror left-right with probability 1/2. cutout: side of a square set to
  the mean pixel at a random centre, clipped at the borders (DeVries & Taylor 2017; 0 = off)."""
  crop_padding: int = 0
  flip: bool = False
  cutout: int = 0

  @property
  def enabled(self) -> bool:
    return bool(self.crop_padding or self.flip or self.cutout)


def random_crop(key: jax.Array, image: jnp.ndarray, padding: int) -> jnp.ndarray:
  """Zero-pads [h, w, c] by `padding` on every side and crops an [h, w, c] window uniformly."""
  padded = jnp.pad(image, ((padding, padding), (padding, padding), (0, 0)))
  offset = jax.random.randint(key, (2,), 0, 2 * padding + 1)
  return lax.dynamic_slice(padded, (offset[0], offset[1], 0), image.shape)


def random_flip(key: jax.Array, image: jnp.ndarray) -> jnp.ndarray:
  """Mirrors [h, w, c] left-right with probability 1/2."""
  return jnp.where(jax.random.bernoulli(key), image[:, ::-1], image)


def cutout(key: jax.Array, image: jnp.ndarray, size: int, fill: jnp.ndarray) -> jnp.ndarray:
  """Sets a size x size square of [h, w, c] to `fill` [c]; its centre is uniform over the image,
  so near the borders less than the whole square falls inside."""
  height, width, _ = image.shape
  centre = jax.random.randint(key, (2,), 0, jnp.array([height, width]))
  top_left = centre - size // 2
  rows = (jnp.arange(height) >= top_left[0]) & (jnp.arange(height) < top_left[0] + size)
  cols = (jnp.arange(width) >= top_left[1]) & (jnp.arange(width) < top_left[1] + size)
  inside = rows[:, None, None] & cols[None, :, None]
  return jnp.where(inside, fill.astype(image.dtype), image)


def augment(key: jax.Array, image: jnp.ndarray, augmentation: Augmentation,
            fill: jnp.ndarray) -> jnp.ndarray:
  """Applies crop, then flip, then cutout, as configured, to one uint8 image [h, w, c]."""
  crop_key, flip_key, cutout_key = jax.random.split(key, 3)
  if augmentation.crop_padding:
    image = random_crop(crop_key, image, augmentation.crop_padding)
  if augmentation.flip:
    image = random_flip(flip_key, image)
  if augmentation.cutout:
    image = cutout(cutout_key, image, augmentation.cutout, fill)
  return image


def augment_batch(keys: jax.Array, images: jnp.ndarray, augmentation: Augmentation,
                  fill) -> jnp.ndarray:
  """keys [n, 2] (one per example), images uint8 [n, h, w, c] -> uint8 [n, h, w, c]."""
  fill = jnp.asarray(fill, images.dtype)
  return jax.vmap(lambda k, x: augment(k, x, augmentation, fill))(keys, images)


def mean_pixel(mean: tuple[float, ...]) -> tuple[int, ...]:
  """The uint8 pixel that normalises to (about) zero: cutout's fill, as in the paper."""
  return tuple(int(round(m * 255)) for m in mean)

"""RandAugment (Cubuk et al. 2020) as jittable ops on one uint8 image [h, w, c], grey or colour.

Each image gets `num_ops` operations drawn uniformly (with replacement) from `OPS`, all at one
magnitude M in [0, 10] (timm's scale: 10 is the strongest). Every op with a magnitude is the
identity at M = 0 and strengthens with M, in a random direction where it has one (timm's
"increasing" variants):

  rotate       up to 30 degrees            shear_x, shear_y          up to 0.3
  translate_x, translate_y  up to 45% of the side
  brightness, contrast, sharpness  factor 1 +- 0.9 M / 10 (PIL's ImageEnhance definitions)
  solarize     invert pixels >= 256 - 25.6 M
  posterize    keep 8 - floor(0.4 M) bits
  autocontrast, equalize: no magnitude (PIL's ImageOps definitions)

Geometric ops sample the source pixel nearest to each output pixel's preimage about the centre
and fill what falls outside with `fill`, the dataset's mean pixel. The in-memory pipeline runs
these inside its jitted batch program; the streamed pipeline runs them on its host threads
(`host_randaugment`).
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

MAX_MAGNITUDE = 10.0


def _level(magnitude, scale):
  return magnitude / MAX_MAGNITUDE * scale


def _signed(key, value):
  return jnp.where(jax.random.bernoulli(key), value, -value)


def _to_uint8(x: jnp.ndarray) -> jnp.ndarray:
  return jnp.clip(jnp.round(x), 0, 255).astype(jnp.uint8)


def _warp(image: jnp.ndarray, matrix: jnp.ndarray, shift: jnp.ndarray, fill) -> jnp.ndarray:
  """Output pixel p takes the input pixel nearest matrix @ (p - centre) + centre + shift, and
  `fill` [c] where that falls outside; coordinates are (row, column)."""
  height, width, _ = image.shape
  centre = jnp.array([(height - 1) / 2, (width - 1) / 2])
  rows, cols = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing='ij')
  points = jnp.stack([rows, cols], -1).astype(jnp.float32) - centre
  source = jnp.round(points @ matrix.T + centre + shift).astype(jnp.int32)
  inside = ((source[..., 0] >= 0) & (source[..., 0] < height)
            & (source[..., 1] >= 0) & (source[..., 1] < width))
  clipped = jnp.clip(source, 0, jnp.array([height - 1, width - 1]))
  moved = image[clipped[..., 0], clipped[..., 1]]
  return jnp.where(inside[..., None], moved, jnp.asarray(fill, image.dtype))


def rotate(key, image, magnitude, fill):
  """Rotation by up to 30 degrees either way about the centre."""
  angle = _signed(key, _level(magnitude, math.radians(30.0)))
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  return _warp(image, jnp.array([[cos, -sin], [sin, cos]]), jnp.zeros(2), fill)


def shear_x(key, image, magnitude, fill):
  """Columns shift in proportion to the row, by up to 0.3 pixels per pixel."""
  shear = _signed(key, _level(magnitude, 0.3))
  return _warp(image, jnp.array([[1.0, 0.0], [shear, 1.0]]), jnp.zeros(2), fill)


def shear_y(key, image, magnitude, fill):
  """Rows shift in proportion to the column, by up to 0.3 pixels per pixel."""
  shear = _signed(key, _level(magnitude, 0.3))
  return _warp(image, jnp.array([[1.0, shear], [0.0, 1.0]]), jnp.zeros(2), fill)


def translate_x(key, image, magnitude, fill):
  """A horizontal shift of up to 45% of the width."""
  shift = _signed(key, _level(magnitude, 0.45 * image.shape[1]))
  return _warp(image, jnp.eye(2), jnp.array([0.0, 1.0]) * shift, fill)


def translate_y(key, image, magnitude, fill):
  """A vertical shift of up to 45% of the height."""
  shift = _signed(key, _level(magnitude, 0.45 * image.shape[0]))
  return _warp(image, jnp.eye(2), jnp.array([1.0, 0.0]) * shift, fill)


def _blend(degenerate: jnp.ndarray, image: jnp.ndarray, factor) -> jnp.ndarray:
  """PIL's ImageEnhance: degenerate + factor (image - degenerate), as uint8."""
  degenerate = degenerate.astype(jnp.float32)
  return _to_uint8(degenerate + factor * (image.astype(jnp.float32) - degenerate))


def _factor(key, magnitude):
  return 1.0 + _signed(key, _level(magnitude, 0.9))


def brightness(key, image, magnitude, fill):
  """Blend with black: factor < 1 darkens, > 1 brightens."""
  return _blend(jnp.zeros_like(image), image, _factor(key, magnitude))


def _grey(image: jnp.ndarray) -> jnp.ndarray:
  """Luma [h, w] as PIL's convert('L'): (299 R + 587 G + 114 B) / 1000; grey images as they are."""
  image = image.astype(jnp.float32)
  if image.shape[-1] == 1:
    return image[..., 0]
  return image @ jnp.array([0.299, 0.587, 0.114])


def contrast(key, image, magnitude, fill):
  """Blend with the image's mean grey level."""
  mean = jnp.floor(jnp.mean(jnp.floor(_grey(image))) + 0.5)
  return _blend(jnp.full_like(image, mean), image, _factor(key, magnitude))


def sharpness(key, image, magnitude, fill):
  """Blend with PIL's SMOOTH filter ([[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13), border kept."""
  height, width, _ = image.shape
  x = image.astype(jnp.float32)
  padded = jnp.pad(x, ((1, 1), (1, 1), (0, 0)))
  neighbours = sum(padded[dy:dy + height, dx:dx + width] for dy in range(3) for dx in range(3))
  smooth = jnp.round((neighbours + 4 * x) / 13)
  border = np.ones((height, width, 1), bool)
  border[1:-1, 1:-1] = False
  return _blend(jnp.where(border, x, smooth), image, _factor(key, magnitude))


def solarize(key, image, magnitude, fill):
  """Inverts pixels at or above 256 - 25.6 M (none at M = 0)."""
  threshold = 256.0 - _level(magnitude, 256.0)
  return jnp.where(image >= threshold, 255 - image, image)


def posterize(key, image, magnitude, fill):
  """Keeps the top 8 - floor(0.4 M) bits of each pixel."""
  bits = 8 - jnp.floor(_level(magnitude, 4.0)).astype(jnp.int32)
  mask = (jnp.left_shift(0xFF, 8 - bits) & 0xFF).astype(image.dtype)
  return image & mask


def autocontrast(key, image, magnitude, fill):
  """Stretches each channel's range to [0, 255]; a constant channel is left alone."""
  low = jnp.min(image, axis=(0, 1)).astype(jnp.float32)
  high = jnp.max(image, axis=(0, 1)).astype(jnp.float32)
  scale = jnp.where(high > low, 255.0 / jnp.maximum(high - low, 1.0), 1.0)
  offset = jnp.where(high > low, low, 0.0)
  return _to_uint8((image.astype(jnp.float32) - offset) * scale)


def _equalize_channel(channel: jnp.ndarray) -> jnp.ndarray:
  """PIL's ImageOps.equalize on uint8 [h, w]: a lookup table from the cumulative histogram,
  in steps of (pixels outside the last occupied level) // 255; identity when that is 0."""
  histogram = jnp.bincount(channel.ravel().astype(jnp.int32), length=256)
  last = jnp.max(jnp.where(histogram > 0, jnp.arange(256), -1))
  step = (channel.size - histogram[last]) // 255
  before = jnp.cumsum(histogram) - histogram
  table = jnp.minimum((before + step // 2) // jnp.maximum(step, 1), 255)
  return jnp.where(step > 0, table[channel.astype(jnp.int32)], channel).astype(channel.dtype)


def equalize(key, image, magnitude, fill):
  """Histogram equalisation of each channel."""
  return jnp.stack([_equalize_channel(image[..., c]) for c in range(image.shape[-1])], -1)


OPS = {op.__name__: op for op in (
    rotate, shear_x, shear_y, translate_x, translate_y, brightness, contrast, sharpness,
    solarize, posterize, autocontrast, equalize)}
# Ops that take no magnitude, and so are not the identity at magnitude 0.
UNSCALED_OPS = ('autocontrast', 'equalize')


def randaugment(key: jax.Array, image: jnp.ndarray, num_ops: int, magnitude: float,
                fill) -> jnp.ndarray:
  """`num_ops` ops drawn uniformly from OPS, applied in turn at `magnitude`: uint8 [h, w, c]
  -> uint8 [h, w, c]. fill [c]: the pixel that geometric ops move in from outside."""
  branches = [functools.partial(op, magnitude=magnitude, fill=fill) for op in OPS.values()]
  for op_key in jax.random.split(key, num_ops):
    choice_key, op_key = jax.random.split(op_key)
    index = jax.random.randint(choice_key, (), 0, len(branches))
    image = jax.lax.switch(index, branches, op_key, image)
  return image


@functools.partial(jax.jit, static_argnames=('num_ops', 'magnitude', 'fill'))
def _jitted(key, image, num_ops, magnitude, fill):
  return randaugment(key, image, num_ops, magnitude, jnp.asarray(fill, jnp.uint8))


def host_randaugment(seed: int, image: np.ndarray, num_ops: int, magnitude: float,
                     fill: tuple[int, ...]) -> np.ndarray:
  """`randaugment` of a host image uint8 [h, w, c] on the CPU, keyed by `seed` (an int drawn by
  the caller's own generator), for host input threads; the result is a NumPy array."""
  cpu = jax.devices('cpu')[0]
  key, image = jax.device_put((jax.random.PRNGKey(seed), image), cpu)
  return np.asarray(_jitted(key, image, num_ops, float(magnitude), tuple(fill)))

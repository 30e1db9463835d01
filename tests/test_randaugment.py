"""RandAugment's ops: shape, dtype and range kept, the identity at magnitude 0, PIL's results."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from convjax.data import augment, randaugment

RNG = np.random.default_rng(0)
IMAGES = {'grey': RNG.integers(20, 200, (12, 10, 1), dtype=np.uint8),
          'colour': RNG.integers(20, 200, (12, 10, 3), dtype=np.uint8)}
FILL = jnp.array([7, 7, 7], jnp.uint8)
KEY = jax.random.PRNGKey(0)


def op(name, image, magnitude, key=KEY):
  fill = FILL[:image.shape[-1]]
  return np.asarray(jax.jit(functools.partial(randaugment.OPS[name], magnitude=magnitude,
                                              fill=fill))(key, jnp.asarray(image)))


@pytest.mark.parametrize('kind', ['grey', 'colour'])
@pytest.mark.parametrize('name', list(randaugment.OPS))
def test_every_op_keeps_shape_and_dtype_and_is_the_identity_at_magnitude_0(name, kind):
  image = IMAGES[kind]
  out = op(name, image, 9.0)
  assert out.shape == image.shape and out.dtype == np.uint8  # uint8: the range is [0, 255].
  if name not in randaugment.UNSCALED_OPS:
    assert np.array_equal(op(name, image, 0.0), image)
    assert not np.array_equal(out, image), f'{name} at magnitude 9 changed nothing'


def test_unscaled_ops_leave_an_already_full_range_equalized_image_alone():
  ramp = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)  # Every level once.
  assert np.array_equal(op('autocontrast', ramp, 0.0), ramp)
  assert np.array_equal(op('equalize', ramp, 0.0), ramp)


def pil(image: np.ndarray) -> Image.Image:
  return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def as_array(image: Image.Image, channels: int) -> np.ndarray:
  return np.asarray(image).reshape(image.size[1], image.size[0], channels)


@pytest.mark.slow  # Every colour op at several magnitudes.
@pytest.mark.parametrize('kind', ['grey', 'colour'])
def test_colour_ops_match_pil(kind):
  image = IMAGES[kind]
  channels = image.shape[-1]
  same = lambda ours, theirs, atol=0: np.testing.assert_allclose(
      ours.astype(int), as_array(theirs, channels).astype(int), atol=atol)
  same(op('autocontrast', image, 0.0), ImageOps.autocontrast(pil(image)), atol=1)
  same(op('equalize', image, 0.0), ImageOps.equalize(pil(image)))
  same(op('posterize', image, 10.0), ImageOps.posterize(pil(image), 4))
  same(op('solarize', image, 5.0), ImageOps.solarize(pil(image), 128))
  # The enhancers: factor 1 +- 0.45 at M = 5; the key's sign picks which.
  for name, enhancer in (('brightness', ImageEnhance.Brightness),
                         ('contrast', ImageEnhance.Contrast),
                         ('sharpness', ImageEnhance.Sharpness)):
    ours = op(name, image, 5.0)
    candidates = [as_array(enhancer(pil(image)).enhance(f), channels) for f in (1.45, 0.55)]
    assert min(np.abs(ours.astype(int) - c.astype(int)).max() for c in candidates) <= 1, name


def test_translate_and_rotate_move_pixels_and_fill_from_outside():
  image = np.zeros((9, 9, 1), np.uint8)
  image[4, 4] = 255
  shifted = op('translate_x', image, 10.0 * 2 / (0.45 * 9))  # A 2-pixel shift.
  assert shifted[4, 4, 0] == 0 and shifted[4, 2, 0] + shifted[4, 6, 0] == 255
  turned = op('rotate', image, 10.0)
  assert turned[4, 4, 0] == 255  # The centre stays.
  assert turned[0, 0, 0] == 7  # A corner comes from outside the image: the fill.


def test_randaugment_in_the_pipeline_keeps_the_batch_and_varies_per_image():
  images = jnp.asarray(np.stack([IMAGES['grey']] * 8))
  keys = jax.random.split(KEY, 8)
  settings = augment.Augmentation(randaugment_ops=2, randaugment_magnitude=9.0)
  out = np.asarray(jax.jit(augment.augment_batch, static_argnums=2)(keys, images, settings, (7,)))
  assert out.shape == images.shape and out.dtype == np.uint8
  assert len({o.tobytes() for o in out}) > 4


def test_host_randaugment_is_the_device_function():
  image = IMAGES['colour']
  host = randaugment.host_randaugment(3, image, 2, 6.0, (7, 7, 7))
  device = randaugment.randaugment(jax.random.PRNGKey(3), jnp.asarray(image), 2, 6.0, FILL)
  assert np.array_equal(host, np.asarray(device))

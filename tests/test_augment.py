"""Each augmentation keeps shape and dtype, and produces exactly the pixels it promises."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convjax.data import augment

IMAGE = np.random.default_rng(0).integers(1, 256, (8, 10, 3), dtype=np.uint8)  # No zeros.
KEYS = jax.random.split(jax.random.PRNGKey(0), 64)


def test_random_crop_is_a_window_of_the_zero_padded_image():
  padded = np.pad(IMAGE, ((2, 2), (2, 2), (0, 0)))
  offsets = set()
  for key in KEYS:
    out = np.asarray(augment.random_crop(key, jnp.asarray(IMAGE), 2))
    assert out.shape == IMAGE.shape and out.dtype == np.uint8
    matches = [(dy, dx) for dy in range(5) for dx in range(5)
               if np.array_equal(out, padded[dy:dy + 8, dx:dx + 10])]
    assert len(matches) == 1
    offsets.add(matches[0])
  assert len(offsets) > 15  # Offsets range over all 25 positions, not a few.


def test_random_flip_mirrors_about_half_the_time():
  outs = [np.asarray(augment.random_flip(key, jnp.asarray(IMAGE))) for key in KEYS]
  flipped = sum(np.array_equal(o, IMAGE[:, ::-1]) for o in outs)
  assert all(np.array_equal(o, IMAGE) or np.array_equal(o, IMAGE[:, ::-1]) for o in outs)
  assert 16 < flipped < 48


def test_cutout_fills_a_square_clipped_at_the_borders():
  fill = jnp.array([7, 7, 7], jnp.uint8)
  sizes = set()
  for key in KEYS:
    out = np.asarray(augment.cutout(key, jnp.asarray(IMAGE), 4, fill))
    changed = np.any(out != IMAGE, axis=-1)
    rows, cols = np.nonzero(changed)
    assert np.all(out[changed] == 7) and np.array_equal(out[~changed], IMAGE[~changed])
    height, width = np.ptp(rows) + 1, np.ptp(cols) + 1
    assert changed.sum() == height * width and 1 <= height <= 4 and 1 <= width <= 4
    sizes.add((height, width))
  assert (4, 4) in sizes and len(sizes) > 1  # Whole squares inside, clipped ones at the edges.


def test_disabled_augmentation_is_the_identity_and_batches_keep_shape():
  images = jnp.asarray(np.stack([IMAGE] * 4))
  keys = KEYS[:4]
  assert np.array_equal(augment.augment_batch(keys, images, augment.Augmentation(), (0, 0, 0)), images)
  out = augment.augment_batch(keys, images, augment.Augmentation(2, True, 3), (1, 2, 3))
  assert out.shape == images.shape and out.dtype == jnp.uint8


@pytest.mark.parametrize('mean,expected', [((0.2860,), (73,)), ((0.4914, 0.4822, 0.4465), (125, 123, 114))])
def test_cutout_fill_is_the_mean_pixel(mean, expected):
  assert augment.mean_pixel(mean) == expected


def test_random_erasing_fills_one_rectangle_of_the_scale_and_ratio_asked_for():
  image = jnp.full((20, 20, 1), 0, jnp.uint8)  # Noise is 0 for 1 pixel in 256 only.
  erased = 0
  for key in KEYS:
    out = np.asarray(augment.random_erase(key, image, 0.5, (0.05, 0.2), (0.5, 2.0)))
    assert out.shape == image.shape and out.dtype == np.uint8
    changed = out[..., 0] != 0
    if not changed.any():
      continue
    erased += 1
    rows, cols = np.nonzero(changed)
    height, width = np.ptp(rows) + 1, np.ptp(cols) + 1
    assert changed.sum() >= 0.95 * height * width  # A filled rectangle (noise may hit 0).
    assert 0.05 * 400 - 20 <= height * width <= 0.2 * 400 + 20  # Rounding of its sides.
    assert 0.5 / 1.5 <= height / width <= 2.0 * 1.5
  assert 16 < erased < 48
  assert np.array_equal(augment.random_erase(KEYS[0], image, 0.0, (0.05, 0.2), (0.5, 2.0)), image)

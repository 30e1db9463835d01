"""Moving Fashion-MNIST and 3-D convolution: the clips say only through motion which item is the
label, the splits are deterministic and disjoint, 3-D convolution through 2-D ones equals XLA's,
and a tiny 3-D net fits a handful of clips."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from convjax import models
from convjax.analysis import visualize
from convjax.data import augment, datasets, video
from convjax.deploy import inference
from convjax.nn import conv_backend
from tests import fitting


def numbered_items(count=60):
  """uint8 items [count, 28, 28, 1], each filled with its own number + 1, and labels cycling
  through Fashion-MNIST's 10 classes, so a clip's pixels say which items it holds."""
  images = (np.arange(count, dtype=np.uint8) + 1)[:, None, None, None] * np.ones((1, 28, 28, 1),
                                                                                   np.uint8)
  return images, (np.arange(count) % 10).astype(np.int32)


def cells(clips):
  """The left and right 36x36 cells of clips [n, t, 36, 72, 1]."""
  return clips[:, :, :, :36], clips[:, :, :, 36:]


def test_clips_hold_one_moving_and_one_still_item_of_another_class():
  images, labels = numbered_items()
  clips, targets = video.make_clips(images, labels, 200, seed=3)
  assert clips.shape == (200, 8, 36, 72, 1) and clips.dtype == np.uint8
  assert targets.dtype == np.int32 and set(targets) <= set(range(len(video.CLASSES)))
  for clip, target in zip(clips, targets):
    moving = [cell for cell in cells(clip[None]) if (cell[0] != cell[0, :1]).any()]
    still = [cell for cell in cells(clip[None]) if not (cell[0] != cell[0, :1]).any()]
    assert len(moving) == len(still) == 1
    item = int(moving[0].max()) - 1  # The number that fills the moving item.
    assert labels[item] == video.CLASSES[target]
    assert labels[int(still[0].max()) - 1] != labels[item]
    assert ((moving[0][0] > 0).sum(axis=(1, 2, 3)) == 28 * 28).all()  # Whole items, every frame.


def test_no_single_frame_tells_which_item_moves():
  """The moving item's offset in its cell has the still item's distribution at every frame."""
  images, labels = numbered_items()
  clips, _ = video.make_clips(images, labels, 4000, seed=0)
  left, right = cells(clips)
  moving_right = (right[:, 0] != right[:, 1]).any(axis=(1, 2, 3))
  top_row = lambda cell: np.argmax(cell.max(axis=(-1, -2)) > 0, axis=-1)  # [n, t]
  moving = np.where(moving_right[:, None], top_row(right), top_row(left))
  still = np.where(moving_right[:, None], top_row(left), top_row(right))
  expected = np.bincount(still[:, 0], minlength=9) / len(still)
  for frame in range(video.FRAMES):
    observed = np.bincount(moving[:, frame], minlength=9) / len(moving)
    np.testing.assert_allclose(observed, expected, atol=0.03)


def test_bounce_reflects_off_both_walls():
  offsets = video.bounce(np.array([6, 1]), np.array([2, -2]), 6, limit=8)
  np.testing.assert_array_equal(offsets, [[6, 8, 6, 4, 2, 0], [1, 1, 3, 5, 7, 7]])


@pytest.mark.slow  # Makes the clips twice from the real images.
def test_clips_are_deterministic_and_test_clips_use_only_test_images():
  images, labels = numbered_items()
  first, again = (video.make_clips(images, labels, 50, seed=1) for _ in range(2))
  np.testing.assert_array_equal(first[0], again[0])
  other = video.make_clips(images, labels, 50, seed=2)[0]
  assert not np.array_equal(first[0], other)
  # The loader makes train clips from train images and test clips from test images.
  fashion = datasets.Dataset(datasets.get_info('fashion_mnist'),
                             datasets.Split(images[:30], labels[:30]),
                             datasets.Split(images[30:], labels[30:]))
  original = datasets.load
  try:
    datasets.load = lambda *args, **kwargs: fashion
    clips = video.load_moving_fashion_mnist(datasets.get_info('moving_fashion_mnist'), None,
                                            'auto', False)
  finally:
    datasets.load = original
  assert clips.train.images.max() <= 30 and clips.test.images[clips.test.images > 0].min() > 30
  assert len(clips.train) == video.NUM_CLIPS['train'] and len(clips.test) == video.NUM_CLIPS['test']


def test_a_crop_shifts_every_frame_alike_and_a_flip_mirrors_every_frame():
  clip = jnp.asarray(np.random.default_rng(0).integers(0, 255, (4, 12, 24, 1)), jnp.float32)
  shifted = augment.random_crop(jax.random.PRNGKey(2), clip, 3)
  assert shifted.shape == clip.shape
  # Every frame's crop is the same window of its padded frame, and no frame moves in time.
  padded = np.pad(np.asarray(clip), ((0, 0), (3, 3), (3, 3), (0, 0)))
  found = [(y, x) for y in range(7) for x in range(7)
           if np.array_equal(padded[:, y:y + 12, x:x + 24], np.asarray(shifted))]
  assert len(found) == 1
  flipped = [augment.random_flip(jax.random.PRNGKey(k), clip) for k in range(8)]
  assert any(np.array_equal(f, clip[:, :, ::-1]) for f in flipped)


@pytest.mark.parametrize('strides, padding, dilation', [
    ((1, 1, 1), 'SAME', (1, 1, 1)), ((2, 1, 2), 'VALID', (1, 1, 1)),
    ((1, 2, 2), ((1, 0), (1, 1), (0, 1)), (2, 1, 1))])
def test_3d_convolution_as_2d_convolutions_equals_xlas(strides, padding, dilation):
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 7, 10, 12, 3))
  w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 3, 3, 4))
  reference = lambda x, w: lax.conv_general_dilated(
      x, w, strides, padding, rhs_dilation=dilation, dimension_numbers=conv_backend.NDHWC,
      precision=lax.Precision.HIGHEST)
  ours = lambda x, w: conv_backend.conv_general_dilated(
      x, w, strides, padding, rhs_dilation=dilation, dimension_numbers=conv_backend.NDHWC)
  np.testing.assert_allclose(ours(x, w), reference(x, w), atol=1e-4, rtol=1e-4)
  grads = [jax.grad(lambda x, w: (f(x, w) ** 2).sum(), (0, 1))(x, w) for f in (ours, reference)]
  for got, want in zip(*grads):
    np.testing.assert_allclose(got, want, atol=1e-3 * float(jnp.abs(want).max()))


@pytest.mark.slow  # Trains a model.
def test_a_tiny_3d_net_fits_a_handful_of_real_clips():
  fashion = datasets.load('fashion_mnist')
  clips, labels = video.make_clips(fashion.test.images[:500], fashion.test.labels[:500], 8, seed=0)
  model = models.create('c3d_small', widths=(8, 16), dropout_rate=0.0)
  assert fitting.fitted_accuracy(model, datasets.get_info('moving_fashion_mnist'), clips, labels,
                                 1e-2, 80) == 1.0


def test_a_saved_clip_is_read_at_the_models_shape_and_anything_else_refused(tmp_path):
  clip = np.random.default_rng(0).integers(0, 255, (8, 36, 72), dtype=np.uint8)
  np.save(tmp_path / 'clip.npy', clip)
  read = inference.read_clip(str(tmp_path / 'clip.npy'), (8, 36, 72, 1))
  np.testing.assert_array_equal(read, clip[..., None])
  np.save(tmp_path / 'short.npy', clip[:6])
  with pytest.raises(inference.ClipError, match=r'is uint8 \[6, 36, 72, 1\]; the model takes '
                                                r'uint8 clips of 8 frames of 36x72'):
    inference.read_clip(str(tmp_path / 'short.npy'), (8, 36, 72, 1))
  np.save(tmp_path / 'float.npy', clip.astype(np.float32))
  with pytest.raises(inference.ClipError, match='is float32'):
    inference.read_clip(str(tmp_path / 'float.npy'), (8, 36, 72, 1))
  (tmp_path / 'clip.wav').write_bytes(b'RIFF....WAVE')
  with pytest.raises(inference.ClipError, match='not a NumPy .npy file'):
    inference.read_clip(str(tmp_path / 'clip.wav'), (8, 36, 72, 1))


def test_a_3d_filter_is_drawn_as_its_frames_side_by_side():
  kernel = np.arange(3 * 3 * 3 * 2, dtype=np.float32).reshape(3, 3, 3, 1, 2)
  images = visualize.filter_images(kernel)
  assert len(images) == 2 and images[0].shape == (3, 11)
  np.testing.assert_array_equal(images[1][:, 4:7], kernel[1, :, :, 0, 1])
  assert (images[0][:, 3] == 0).all()

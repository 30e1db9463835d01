"""Figures: nothing drawn outside its axes, and no blank bands in tall grids."""
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

from convjax.analysis import plots


def _longest_blank_band(path) -> int:
  """The most consecutive pixel rows of the PNG at path that are entirely white."""
  blank = (np.asarray(Image.open(path).convert('L')) > 250).all(axis=1)
  longest = run = 0
  for row in blank:
    run = run + 1 if row else 0
    longest = max(longest, run)
  return longest


@pytest.mark.slow  # Draws and measures a 60-row figure.
def test_a_tall_feature_map_grid_has_no_blank_band_under_its_title(tmp_path):
  """ResNet-20 draws about 30 stages; the title once sat above a band of 12% of the height."""
  rng = np.random.default_rng(0)
  stages = [(f'stage {i}', rng.random((8, 8, 16))) for i in range(30)]
  path = tmp_path / 'maps.png'
  plots.feature_rows(stages, str(path), suptitle='a title')
  height = Image.open(path).size[1]
  assert height > 30 * 0.9 * plots.DPI * 0.9
  assert _longest_blank_band(path) < 0.4 * plots.DPI  # The gap between rows is about 0.25 in.


def test_filter_grid_keeps_its_title_close(tmp_path):
  images = [np.random.default_rng(i).normal(size=(5, 5)) for i in range(64)]
  path = tmp_path / 'filters.png'
  plots.image_grid(images, [str(i) for i in range(64)], str(path), suptitle='filters',
                   symmetric=True)
  assert _longest_blank_band(path) < 0.4 * plots.DPI


def test_scatter_labels_stay_inside_the_axes(tmp_path):
  """The outermost points' labels (top right, bottom left) were clipped by the frame."""
  points = {'lenet5': (61_706, 0.9107), 'resnet20': (272_474, 0.8983),
            'vgg11_bn': (9_231_114, 0.6049), 'alexnet_small': (1_000_000, 0.75)}
  fig = plots.scatter(points, 'parameters', 'test accuracy', 'title', str(tmp_path / 's.png'))
  ax = fig.axes[0]
  canvas = FigureCanvasAgg(fig)  # A closed figure has lost its canvas; lay it out again.
  canvas.draw()
  renderer = canvas.get_renderer()
  frame = ax.get_window_extent(renderer)
  labels = [text for text in ax.texts if text.get_text() in points]
  assert len(labels) == len(points)
  for text in labels:
    box = text.get_window_extent(renderer)
    assert frame.x0 <= box.x0 and box.x1 <= frame.x1, text.get_text()
    assert frame.y0 <= box.y0 and box.y1 <= frame.y1, text.get_text()


def test_detections_in_one_box_share_one_label_best_first(tmp_path):
  """An object found in several classes (one CenterNet peak, one box) gets one label, not
  several printed over each other."""
  found = [{'bbox': (14, 62, 29, 39), 'class': 'Pullover', 'score': 0.46},
           {'bbox': (88, 65, 29, 11), 'class': 'Sandal', 'score': 0.67},
           {'bbox': (14.0, 62.0, 29.0, 39.0), 'class': 'Coat', 'score': 0.52}]
  assert plots.box_labels(found) == [((14.0, 62.0, 29.0, 39.0), 'Coat 0.52 / Pullover 0.46'),
                                     ((88.0, 65.0, 29.0, 11.0), 'Sandal 0.67')]
  path = tmp_path / 'boxes.png'
  plots.detections(np.zeros((128, 128)), found, str(path))
  assert Image.open(path).size[0] > 100


def test_bfloat16_feature_maps_draw_as_their_float32_values(tmp_path):
  """A half-precision model's maps: matplotlib drew a bfloat16 32x32 map as one flat colour."""
  import ml_dtypes
  maps = np.random.default_rng(0).normal(size=(32, 32, 4)).astype(ml_dtypes.bfloat16)
  pictures = []
  for name, stage in (('half', maps), ('full', maps.astype(np.float32))):
    plots.feature_rows([('stage', stage)], str(tmp_path / f'{name}.png'))
    pictures.append(np.asarray(Image.open(tmp_path / f'{name}.png')))
  np.testing.assert_array_equal(pictures[0], pictures[1])

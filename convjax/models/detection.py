"""Finding objects in scenes: a feature pyramid on any backbone, and a CenterNet head on it.

Why CenterNet (Zhou, Wang & Krähenbühl 2019, "Objects as Points") rather than FCOS (Tian et al.
2019): CenterNet predicts one map at one scale, a heatmap of object centres per class plus each
centre's box size and sub-pixel offset. Its targets are dense arrays of a fixed shape, and its
decoding is a 3x3 max pool and a top-k, with no non-maximum suppression and no per-level
assignment of boxes to pyramid levels. Everything, decoding included, is a fixed-shape array
program that jit and pmap run as they run a classifier. The pyramid still matters: its top-down
path (Lin et al. 2017, "Feature Pyramid Networks") brings the deepest, most semantic maps to the
finest level, which is the one CenterNet reads.

  model = CenterNet(backbone=models.create('resnet18', input_shape=(128, 128, 1)), num_classes=10)
  outputs = model.apply(variables, images, train=False)
    images [b, h, w, c] -> {'heatmap': logits [b, h/s, w/s, classes], 'size': [b, h/s, w/s, 2],
                            'offset': [b, h/s, w/s, 2]}, float32, s the finest level's reduction.
  boxes, scores, classes = decode(outputs, stride=s, max_detections=100)
"""
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from convjax.nn import layers

# The heatmap's initial bias: sigmoid(-2.19) = 0.1, so the first steps' focal loss is not swamped
# by the many easy background positions (Lin et al. 2017, "Focal Loss", section 4.1).
PRIOR_BIAS = -2.19


class FeaturePyramid(nn.Module):
  """FPN's top-down path: maps [b, h_i, w_i, c_i] from fine to coarse -> as many maps
  [b, h_i, w_i, width], each the sum of a 1x1 lateral projection of its own map and the nearest
  upsampling of the coarser result, smoothed by a 3x3 convolution."""
  width: int = 64
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, maps: Sequence[jnp.ndarray]) -> list[jnp.ndarray]:
    laterals = [layers.conv2d(self.width, 1, dtype=self.dtype, name=f'lateral_{i}')(m)
                for i, m in enumerate(maps)]
    merged = [laterals[-1]]
    for lateral in reversed(laterals[:-1]):
      coarser = jax.image.resize(merged[0], lateral.shape[:3] + merged[0].shape[3:], 'nearest')
      merged.insert(0, lateral + coarser)
    return [layers.conv2d(self.width, 3, padding='SAME', dtype=self.dtype, name=f'output_{i}')(m)
            for i, m in enumerate(merged)]


class CenterNet(nn.Module):
  """A backbone's feature maps -> FeaturePyramid -> three heads on its finest level.

  backbone: an image backbone from the registry (it takes `feature_indices`).
  feature_indices: the backbone maps the pyramid merges, fine to coarse; the first sets the
    output's reduction.
  """
  backbone: nn.Module
  num_classes: int
  feature_indices: Sequence[int] = (1, 2, 3, 4)
  pyramid_width: int = 64
  head_width: int = 64
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, return_pyramid: bool = False):
    maps = self.backbone(x, train=train, feature_indices=tuple(self.feature_indices))
    pyramid = FeaturePyramid(self.pyramid_width, self.dtype, name='pyramid')(maps)
    outputs = {'heatmap': self._head(pyramid[0], self.num_classes, 'heatmap', PRIOR_BIAS),
               'size': self._head(pyramid[0], 2, 'size'),
               'offset': self._head(pyramid[0], 2, 'offset')}
    return (outputs, pyramid) if return_pyramid else outputs

  def _head(self, x, outputs: int, name: str, bias: float = 0.0) -> jnp.ndarray:
    """3x3 conv -> ReLU -> 1x1 conv, as CenterNet's heads: [b, h, w, c] -> [b, h, w, outputs]."""
    x = nn.relu(layers.conv2d(self.head_width, 3, padding='SAME', dtype=self.dtype,
                              name=f'{name}_hidden')(x))
    x = layers.conv2d(outputs, 1, dtype=self.dtype, bias_init=nn.initializers.constant(bias),
                      name=f'{name}_out')(x)
    return x.astype(jnp.float32)


def output_stride(images: jnp.ndarray, outputs: dict) -> float:
  """Input pixels per output pixel, from the static shapes of images [b, h, w, c] and CenterNet's
  outputs."""
  return images.shape[1] / outputs['heatmap'].shape[1]


def flip_average(outputs: dict, mirrored: dict) -> dict:
  """CenterNet's flip test: outputs of images [b, h, w, c] and of their mirrors -> outputs whose
  heatmap probabilities and sizes are the two predictions' means, the mirror's mirrored back (its
  output column x is the image's w - 1 - x when the stride divides the width); the offsets are
  the image's own, as in CenterNet's code. The heatmap stays logits."""
  back = lambda field: jnp.flip(mirrored[field], axis=2)
  probability = (jax.nn.sigmoid(outputs['heatmap']) + jax.nn.sigmoid(back('heatmap'))) / 2
  return {'heatmap': jnp.log(probability) - jnp.log1p(-probability),
          'size': (outputs['size'] + back('size')) / 2, 'offset': outputs['offset']}


def peaks(heatmap: jnp.ndarray) -> jnp.ndarray:
  """Scores [b, h, w, c] with every position that is not the maximum of its 3x3 neighbourhood
  set to 0: CenterNet's replacement for non-maximum suppression."""
  neighbourhood = nn.max_pool(heatmap, (3, 3), strides=(1, 1), padding='SAME')
  return jnp.where(heatmap == neighbourhood, heatmap, 0.0)


def decode(outputs: dict, stride: int, max_detections: int = 100):
  """The `max_detections` highest peaks of each image's heatmap as boxes.

  outputs: CenterNet's {'heatmap' logits [b, h, w, c], 'size' [b, h, w, 2] (width, height in
    output pixels), 'offset' [b, h, w, 2] (x, y of the centre within its output pixel)}.
  Returns boxes float32 [b, k, 4] as COCO's (x, y, width, height) in input pixels, scores [b, k]
  in (0, 1) and classes int32 [b, k], best first.
  """
  scores = peaks(jax.nn.sigmoid(outputs['heatmap']))
  b, h, w, c = scores.shape
  top_scores, flat = jax.lax.top_k(scores.reshape(b, -1), max_detections)
  position, classes = flat // c, flat % c
  y, x = position // w, position % w
  gather = lambda field: jnp.take_along_axis(field.reshape(b, h * w, 2), position[..., None], 1)
  size, offset = gather(outputs['size']), gather(outputs['offset'])
  centre_x, centre_y = x + offset[..., 0], y + offset[..., 1]
  boxes = jnp.stack([centre_x - size[..., 0] / 2, centre_y - size[..., 1] / 2,
                     size[..., 0], size[..., 1]], -1) * stride
  return boxes, top_scores, classes.astype(jnp.int32)

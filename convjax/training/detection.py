"""CenterNet's training targets and loss (Zhou, Wang & Krähenbühl 2019, "Objects as Points").

Each object becomes a peak on its class's heatmap at its centre's output pixel, spread as a
Gaussian whose radius is the one at which a box centred that far away still overlaps the object
by IoU MIN_OVERLAP (CornerNet's rule, which CenterNet keeps); the same pixel holds the object's
size and the sub-pixel offset of its centre. The loss is the penalty-reduced focal loss on the
heatmaps plus L1 on size and offset at the peaks. Everything is a fixed-shape array program over
the padded annotations (scenes.MAX_ITEMS objects per image, class -1 for padding).

`train_step` and `eval_step` are the detection counterparts of convjax/training/steps.py's, on
the same TrainState; `evaluate` scores the test split with COCO's AP (training/coco.py).
"""
import dataclasses
from typing import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from convjax import parallel
from convjax.models import detection as detection_model
from convjax.training import coco, steps

MIN_OVERLAP = 0.7
_FOUND = ('boxes', 'scores', 'classes')  # decode's outputs, in order.


@dataclasses.dataclass(frozen=True)
class LossWeights:
  """CenterNet's weights: focal loss alpha and beta, and the terms' weights (the paper's 1, 0.1
  and 1)."""
  alpha: float = 2.0
  beta: float = 4.0
  heatmap: float = 1.0
  size: float = 0.1
  offset: float = 1.0


def gaussian_radius(height: jnp.ndarray, width: jnp.ndarray,
                    min_overlap: float = MIN_OVERLAP) -> jnp.ndarray:
  """The smallest of CornerNet's three radii (both corners inside, both outside, one of each) at
  which a shifted box still has IoU min_overlap with a height x width box; as CenterNet's code
  computes it."""
  m = min_overlap
  b1, c1 = height + width, width * height * (1 - m) / (1 + m)
  r1 = (b1 + jnp.sqrt(b1 ** 2 - 4 * c1)) / 2
  b2, c2 = 2 * (height + width), (1 - m) * width * height
  r2 = (b2 + jnp.sqrt(b2 ** 2 - 16 * c2)) / 2
  a3, b3, c3 = 4 * m, -2 * m * (height + width), (m - 1) * width * height
  r3 = (b3 + jnp.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
  return jnp.minimum(jnp.minimum(r1, r2), r3)


def targets(boxes: jnp.ndarray, classes: jnp.ndarray, output_size: tuple[int, int],
            num_classes: int, stride: int) -> dict:
  """One image's targets.

  boxes [k, 4] (x, y, width, height in input pixels) and classes [k] (-1: padding) ->
    heatmap [h, w, num_classes] in [0, 1], exactly 1 at each object's peak;
    index int32 [k] (the peak's y * w + x), size [k, 2] and offset [k, 2] (output pixels);
    mask float32 [k] (1 for real objects).
  """
  h, w = output_size
  valid = classes >= 0
  centre = (boxes[:, :2] + boxes[:, 2:] / 2) / stride
  peak = jnp.clip(jnp.floor(centre), 0, jnp.array([w - 1, h - 1])).astype(jnp.int32)
  size = boxes[:, 2:] / stride
  radius = jnp.floor(jnp.maximum(0.0, gaussian_radius(size[:, 1], size[:, 0])))
  sigma = (2 * radius + 1) / 6
  dx = jnp.arange(w)[None, None, :] - peak[:, 0, None, None]
  dy = jnp.arange(h)[None, :, None] - peak[:, 1, None, None]
  r = radius[:, None, None]
  gaussian = jnp.exp(-(dx ** 2 + dy ** 2) / (2 * sigma[:, None, None] ** 2))
  gaussian = jnp.where((jnp.abs(dx) <= r) & (jnp.abs(dy) <= r) & valid[:, None, None],
                       gaussian, 0.0)
  one_hot = jax.nn.one_hot(classes, num_classes)  # All zeros for padding (-1).
  heatmap = jnp.max(gaussian[..., None] * one_hot[:, None, None, :], axis=0)
  return {'heatmap': heatmap, 'index': peak[:, 1] * w + peak[:, 0], 'size': size,
          'offset': centre - peak, 'mask': valid.astype(jnp.float32)}


def batch_targets(boxes: jnp.ndarray, classes: jnp.ndarray, output_size: tuple[int, int],
                  num_classes: int, stride: int) -> dict:
  """`targets` for boxes [b, k, 4] and classes [b, k]: each field gains a leading batch axis."""
  return jax.vmap(lambda b, c: targets(b, c, output_size, num_classes, stride))(boxes, classes)


def focal_loss(logits: jnp.ndarray, heatmap: jnp.ndarray, alpha: float, beta: float):
  """CenterNet's penalty-reduced focal loss, summed over logits [b, h, w, c] and divided by the
  number of peaks (positions where heatmap == 1): near a peak the Gaussian's (1 - y)^beta
  forgives a confident prediction."""
  p = jax.nn.sigmoid(logits)
  positive = heatmap == 1.0
  positive_loss = jnp.where(positive, (1 - p) ** alpha * jax.nn.log_sigmoid(logits), 0.0)
  negative_loss = jnp.where(positive, 0.0,
                            (1 - heatmap) ** beta * p ** alpha * jax.nn.log_sigmoid(-logits))
  return -(positive_loss.sum() + negative_loss.sum()) / jnp.maximum(positive.sum(), 1)


def _gathered_l1(prediction: jnp.ndarray, index: jnp.ndarray, target: jnp.ndarray,
                 mask: jnp.ndarray) -> jnp.ndarray:
  """Mean |prediction - target| over the real objects' coordinates: prediction [b, h, w, 2]
  read at index [b, k]; target [b, k, 2]; mask [b, k]."""
  b, h, w, d = prediction.shape
  at_peaks = jnp.take_along_axis(prediction.reshape(b, h * w, d), index[..., None], 1)
  error = jnp.abs(at_peaks - target) * mask[..., None]
  return error.sum() / (d * mask.sum() + 1e-4)


def loss(outputs: dict, batch_targets_: dict, weights: LossWeights = LossWeights()):
  """CenterNet's loss for one device's batch -> (total, {'heatmap_loss', 'size_loss',
  'offset_loss'}). outputs: CenterNet's dict; batch_targets_: `batch_targets`'s."""
  terms = {
      'heatmap_loss': focal_loss(outputs['heatmap'], batch_targets_['heatmap'], weights.alpha,
                                 weights.beta),
      'size_loss': _gathered_l1(outputs['size'], batch_targets_['index'],
                                batch_targets_['size'], batch_targets_['mask']),
      'offset_loss': _gathered_l1(outputs['offset'], batch_targets_['index'],
                                  batch_targets_['offset'], batch_targets_['mask']),
  }
  total = (weights.heatmap * terms['heatmap_loss'] + weights.size * terms['size_loss'] +
           weights.offset * terms['offset_loss'])
  return total, terms


def train_step(state: steps.TrainState, batch: dict, *, normalize: Callable,
               schedule: optax.Schedule, weights: LossWeights = LossWeights(),
               recipe: steps.Recipe = steps.Recipe()) -> tuple[steps.TrainState, dict]:
  """One optimiser step on one device's share of a detection batch: image uint8 [n, h, w, c],
  boxes [n, k, 4], classes [n, k]. Returns the new state and {'train_loss', 'heatmap_loss',
  'size_loss', 'offset_loss', 'learning_rate', 'finite'}, averaged over devices."""
  images = normalize(batch['image'])

  def loss_fn(params):
    outputs, updates = state.apply_fn({'params': params, 'batch_stats': state.batch_stats},
                                      images, train=True, rngs={'dropout': steps.step_rng(state)},
                                      mutable=['batch_stats'])
    t = batch_targets(batch['boxes'], batch['classes'], outputs['heatmap'].shape[1:3],
                      outputs['heatmap'].shape[-1],
                      detection_model.output_stride(images, outputs))
    total, terms = loss(outputs, t, weights)
    return total, (terms, updates['batch_stats'])

  (total, (terms, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  step_metrics = {'train_loss': total, 'total_loss': total, **terms}
  return steps.apply_update(state, grads, batch_stats, step_metrics, schedule, recipe)


def eval_step(state: steps.TrainState, batch: dict, *, normalize: Callable,
              max_detections: int, flip: bool = False) -> dict:
  """One device's detections: boxes [n, max_detections, 4] (x, y, w, h in input pixels),
  scores and classes [n, max_detections], best first, and the batch's mask [n]. With `flip`,
  also 'tta_boxes', 'tta_scores' and 'tta_classes' from CenterNet's flip test
  (detection_model.flip_average of the images and their mirrors); where the state keeps
  averaged variables (state.ema, Recipe.ema_decay > 0), also 'ema_boxes', 'ema_scores' and
  'ema_classes' from them, without the flip test."""
  images = normalize(batch['image'])
  found = _detections(state, {'params': state.params, 'batch_stats': state.batch_stats}, images,
                      max_detections, flip)
  if state.ema is not None:
    averaged = _detections(state, state.ema, images, max_detections, flip=False)
    found.update({f'ema_{key}': value for key, value in averaged.items()})
  return {**found, 'mask': batch['mask']}


def _detections(state: steps.TrainState, variables: dict, images: jnp.ndarray,
                max_detections: int, flip: bool) -> dict:
  """decode's boxes, scores and classes of normalised images [n, h, w, c] under `variables`,
  and with `flip` the flip test's as tta_*."""
  apply = lambda x: state.apply_fn(variables, x, train=False)
  outputs = apply(images)
  stride = detection_model.output_stride(images, outputs)
  found = dict(zip(_FOUND, detection_model.decode(outputs, stride, max_detections)))
  if flip:
    averaged = detection_model.flip_average(outputs, apply(jnp.flip(images, axis=2)))
    found.update({f'tta_{key}': value for key, value in zip(
        _FOUND, detection_model.decode(averaged, stride, max_detections))})
  return found


def evaluate(p_eval_step: Callable, state: steps.TrainState, batches: Iterable[dict],
             ground_truth: dict, box_scales: np.ndarray | None = None) -> dict:
  """COCO's metrics of the test split (batches: every test image once, in order, masked) against
  its ground truth in COCO's format: {'test_AP', 'test_AP50', ..., 'num_test_examples'}.

  box_scales: float [num_images], the factor by which each input was resized from the image the
    ground truth describes (letterboxing); None where inputs are those images.
  """
  found = {}
  for batch in batches:
    result = parallel.gather(p_eval_step(state, batch))  # Every process's devices' parts.
    keep = result.pop('mask').reshape(-1) > 0  # [devices * per_device]
    for key, value in result.items():
      found.setdefault(key, []).append(value.reshape((-1,) + value.shape[2:])[keep])
  found = {key: np.concatenate(values) for key, values in found.items()}
  results = {'num_test_examples': len(found['boxes'])}
  # The plain detections, and the flip test's and the averaged weights' where they ran.
  for prefix in ('', 'tta_', 'ema_'):
    if f'{prefix}boxes' not in found:
      continue
    boxes, scores, classes = (found[f'{prefix}{key}'] for key in _FOUND)
    if box_scales is not None:
      boxes = boxes / box_scales[:, None, None]
    metrics = coco.evaluate(ground_truth, coco.detections_json(boxes, scores, classes))
    results.update({f'{prefix}test_{name}': value for name, value in metrics.items()})
  return results

"""The pure per-device steps and the state they carry.

`train_step` and `eval_step` see one device's share of a batch and average across devices
through `parallel.mean` and `parallel.sum`; `builder` makes them data-parallel, and the loop in
`train` only sees replicated states and sharded batches, never devices.
"""
import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from convjax import models, parallel
from convjax.data import mixing as mixing_lib
from convjax.training import fused_adamw, fused_sgd

# Folded into a step's dropout key for its Mixup/CutMix draws (micro-batches fold in 0..K-1).
_MIX_STREAM = 0x6d6978


class TrainState(train_state.TrainState):
  """Parameters, optimiser state and step, plus:

  batch_stats: batch-norm running averages ({} for models without batch norm).
  rng: a raw uint32[2] key; step s on device d draws dropout from fold_in(fold_in(rng, s), d).
  ema: None, or with Recipe.ema_decay the exponential moving averages of the parameters and
    batch statistics, {'params': ..., 'batch_stats': ...}, evaluated beside them.
  """
  batch_stats: Any
  rng: jax.Array
  ema: Any = None


def init_variables(model, input_shape, seed: int) -> dict:
  """The model's random initialisation from `seed` for input (height, width, channels):
  {'params': ..., 'batch_stats': ...} ({} for models without batch norm)."""
  init_key = jax.random.split(jax.random.PRNGKey(seed))[0]
  dummy = jnp.zeros((1,) + tuple(input_shape), jnp.float32)
  variables = jax.jit(functools.partial(model.init, train=False))(init_key, dummy)
  return _variables(variables['params'], variables.get('batch_stats', {}))


def create_train_state(model, tx: optax.GradientTransformation, input_shape, seed: int,
                       ema: bool = False, variables: dict | None = None) -> TrainState:
  """A fresh state; input_shape is (height, width, channels). `variables` ({'params',
  'batch_stats'}, e.g. pretrained ones) replace the random initialisation from `seed`, which
  still seeds dropout. With `ema` the averages start as copies of the initial variables."""
  dropout_key = jax.random.split(jax.random.PRNGKey(seed))[1]
  if variables is None:
    variables = init_variables(model, input_shape, seed)
  params, batch_stats = variables['params'], variables.get('batch_stats', {})
  return TrainState.create(apply_fn=model.apply, params=params, tx=tx, batch_stats=batch_stats,
                           rng=dropout_key,
                           ema=_variables(params, batch_stats) if ema else None)


@dataclasses.dataclass(frozen=True)
class Recipe:
  """How the train and eval steps treat a batch, beyond the model and optimiser.

  aux_loss_weight: weight of the auxiliary classifiers' losses (GoogLeNet), for models that sow
    'aux_logits' into 'intermediates'; train_loss reports the main classifier's loss.
  skip_nonfinite: when the loss or a gradient is NaN or Inf, keep the parameters, optimiser
    state and batch statistics as they were (the step counter still advances).
  label_smoothing: epsilon; targets are (1 - epsilon) one-hot + epsilon / classes (Szegedy et
    al. 2016, the Inception-v3 paper). Evaluation's loss is never smoothed.
  grad_accum_steps: K; each device's batch is split into K micro-batches whose gradients are
    averaged, so an update equals one over the whole batch with 1/K of the activation memory.
    Batch norm normalises each micro-batch with its own statistics and updates its running
    averages K times, as K successive forward passes would.
  tta_flip: evaluation also classifies each image's mirror and averages the two logits,
    reported as tta_* beside the plain figures.
  tta_translate: p > 0 also classifies each image shifted p pixels up-left and down-right
    (zero-filled; with their mirrors under tta_flip); the tta_* logits are half the mean over
    the untranslated views and half that over the translated ones (airbench's, Jordan 2024).
  mixing: Mixup and CutMix of each device's batch, with soft targets (mixing.Mixing).
  ema_decay: d > 0 keeps state.ema, an exponential moving average of the parameters and batch
    statistics, updated after every step with min(d, (1 + step) / (10 + step)) so that early
    averages do not cling to the random initialisation (timm's warm-up; TensorFlow's
    num_updates); evaluation reports it as ema_* beside the plain figures.
  frozen_backbone: train only the head (`head`, the model's fnmatch patterns of top-level
    modules, models.ModelSpec.head): the model runs in evaluation mode, so batch norm normalises
    with its running statistics and keeps them, dropout is off, and no gradient flows into the
    backbone (the optimiser also leaves it unchanged, see optim.partition_optimizer).
  """
  aux_loss_weight: float = 0.0
  skip_nonfinite: bool = False
  label_smoothing: float = 0.0
  grad_accum_steps: int = 1
  tta_flip: bool = False
  tta_translate: int = 0
  mixing: mixing_lib.Mixing = mixing_lib.Mixing()
  ema_decay: float = 0.0
  frozen_backbone: bool = False
  head: tuple[str, ...] = ()


def cross_entropy(logits: jnp.ndarray, labels: jnp.ndarray,
                  label_smoothing: float = 0.0) -> jnp.ndarray:
  """Softmax cross-entropy per example: logits [batch, classes], int labels [batch] -> [batch],
  against targets smoothed by label_smoothing (0: the one-hot labels themselves)."""
  logits = logits.astype(jnp.float32)
  if not label_smoothing:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
  return optax.softmax_cross_entropy(logits, targets)


def target_loss(logits: jnp.ndarray, targets: dict, label_smoothing: float = 0.0) -> jnp.ndarray:
  """Cross-entropy per example [batch] against a training batch's targets: {'label'} int [batch],
  plus, for a mixed batch, 'partner' int [batch] and 'lam' float [batch] (mixing.mixed_targets)."""
  if 'lam' not in targets:
    return cross_entropy(logits, targets['label'], label_smoothing)
  soft = mixing_lib.mixed_targets(targets['label'], targets['partner'], targets['lam'],
                                  logits.shape[-1], label_smoothing)
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), soft)


def _variables(params, batch_stats) -> dict:
  return {'params': params, 'batch_stats': batch_stats}


def train_step(state: TrainState, batch: dict, *, normalize: Callable, schedule: optax.Schedule,
               recipe: Recipe = Recipe()) -> tuple[TrainState, dict]:
  """One optimiser step on one device's share of the global batch.

  Gradients and metrics are averaged over all devices. Batch-norm layers normalise with this
  device's batch statistics; the running averages are then averaged over devices so every
  replica holds the same state (the flax ImageNet example's choice).

  Args:
    state: this device's replica.
    batch: image uint8 [per_device_batch, h, w, c], label int32 [per_device_batch].
    normalize: uint8 images -> model input.
    schedule: the learning rate by step, for logging.
    recipe: smoothing, mixing, accumulation, EMA, auxiliary losses, non-finite steps (Recipe).
  Returns:
    The new state and {'train_loss', 'train_accuracy', 'learning_rate', 'finite'}, where
    finite (bool) says the averaged loss and gradients were finite, the same on every device.
    With mixing, train_accuracy counts each example's own label, not its partner's.
  """
  images, targets = normalize(batch['image']), {'label': batch['label']}
  dropout_rng = step_rng(state)
  if recipe.mixing.enabled:
    images, lam = mixing_lib.mix(jax.random.fold_in(dropout_rng, _MIX_STREAM), images,
                                 recipe.mixing)
    targets.update(partner=mixing_lib.partners(batch['label']),
                   lam=jnp.full(batch['label'].shape, lam))
  grads, step_metrics, batch_stats = _accumulated_grads(state, images, targets, dropout_rng, recipe)
  return apply_update(state, grads, batch_stats, step_metrics, schedule, recipe)


def step_rng(state: TrainState) -> jax.Array:
  """This step's dropout key on this device: fold_in(fold_in(rng, step), device)."""
  return jax.random.fold_in(jax.random.fold_in(state.rng, state.step), parallel.device_index())


def apply_update(state: TrainState, grads, batch_stats, step_metrics: dict,
                 schedule: optax.Schedule, recipe: Recipe) -> tuple[TrainState, dict]:
  """What every task's train step ends with: this device's gradients, batch statistics and
  metrics ({'train_loss', 'total_loss', ...}) averaged over devices, the optimiser's update, the
  EMA, and the finite check that may keep the old state (recipe.skip_nonfinite). Returns the new
  state and the averaged metrics less total_loss, plus 'learning_rate' and 'finite'."""
  grads = parallel.mean(grads)
  # A frozen backbone's statistics stay bit for bit: a mean over devices could round them.
  batch_stats = state.batch_stats if recipe.frozen_backbone else parallel.mean(batch_stats)
  with jax.named_scope('optimizer'):  # How analysis.profile tells the update's operations.
    new_state, grad_squares = _apply_gradients(state, grads, batch_stats)
    if recipe.ema_decay:
      new_state = new_state.replace(ema=ema_update(state.ema, new_state, recipe.ema_decay))
  step_metrics = parallel.mean(step_metrics)
  # From averaged values, so every device takes the same decision.
  finite = jnp.isfinite(step_metrics.pop('total_loss')) & jnp.isfinite(grad_squares)
  if recipe.skip_nonfinite:
    keep = functools.partial(jax.tree.map, lambda new, old: jnp.where(finite, new, old))
    new_state = new_state.replace(params=keep(new_state.params, state.params),
                                  opt_state=keep(new_state.opt_state, state.opt_state),
                                  batch_stats=keep(new_state.batch_stats, state.batch_stats),
                                  ema=keep(new_state.ema, state.ema))
  step_metrics['learning_rate'] = schedule(state.step)
  step_metrics['finite'] = finite
  return new_state, step_metrics


def _apply_gradients(state: TrainState, grads, batch_stats) -> tuple[TrainState, jnp.ndarray]:
  """(state.apply_gradients(...), the squared norm of grads): in one pass per parameter where
  the optimiser is fused (fused_sgd, fused_adamw), which sums the squares as it reads the
  gradients."""
  if isinstance(state.tx, (fused_sgd.FusedSGD, fused_adamw.FusedAdamW)):
    params, opt_state, squares = state.tx.apply(grads, state.opt_state, state.params)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                         batch_stats=batch_stats), squares
  new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  return new_state, optax.tree.norm(grads, squared=True)


def ema_decay_at(step: jnp.ndarray, decay: float) -> jnp.ndarray:
  """The decay used after step `step` (0-based): min(decay, (1 + step) / (10 + step))."""
  step = jnp.asarray(step, jnp.float32)
  return jnp.minimum(decay, (1 + step) / (10 + step))


def ema_update(ema: dict, state: TrainState, decay: float) -> dict:
  """The averages after `state`'s update: d ema + (1 - d) new, for d = ema_decay_at(step - 1).

  state.step has already advanced, so the first update (step 1) uses d = 1/10.
  """
  d = ema_decay_at(state.step - 1, decay)
  new = _variables(state.params, state.batch_stats)
  return jax.tree.map(lambda average, value: d * average + (1 - d) * value, ema, new)


def _stop_backbone_gradients(params, head: tuple[str, ...]):
  """params with every leaf outside the head (models.head_mask) behind a stop_gradient."""
  return jax.tree.map(lambda in_head, p: p if in_head else jax.lax.stop_gradient(p),
                      models.head_mask(head, params), params)


def _grads(state: TrainState, batch_stats, images, targets: dict, rng, recipe: Recipe):
  """(gradients, {'train_loss', 'total_loss', 'train_accuracy'}, new batch_stats) of one
  forward and backward pass over images [n, h, w, c] and targets (`target_loss`) of [n]."""
  def loss_fn(params):
    if recipe.frozen_backbone:  # Gradients reach the head alone, so the backward pass is short.
      params = _stop_backbone_gradients(params, recipe.head)
    logits, updates = state.apply_fn(_variables(params, batch_stats), images,
                                     train=not recipe.frozen_backbone, rngs={'dropout': rng},
                                     mutable=['batch_stats', 'intermediates'])
    loss = target_loss(logits, targets, recipe.label_smoothing).mean()
    aux_logits = updates.get('intermediates', {}).get('aux_logits', ())
    aux_loss = sum(target_loss(aux, targets, recipe.label_smoothing).mean() for aux in aux_logits)
    return loss + recipe.aux_loss_weight * aux_loss, (loss, logits, updates)

  (total, (loss, logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  step_metrics = {'train_loss': loss, 'total_loss': total,
                  'train_accuracy': jnp.mean(jnp.argmax(logits, -1) == targets['label'])}
  # In evaluation mode (a frozen backbone) batch norm writes nothing: the statistics stay.
  return grads, step_metrics, updates.get('batch_stats', batch_stats)


def _accumulated_grads(state: TrainState, images, targets: dict, rng, recipe: Recipe):
  """`_grads` over recipe.grad_accum_steps equal micro-batches, averaged; batch statistics pass
  from one micro-batch to the next. One micro-batch is `_grads` itself."""
  count = recipe.grad_accum_steps
  if count == 1:
    return _grads(state, state.batch_stats, images, targets, rng, recipe)
  split = functools.partial(jax.tree.map,
                            lambda x: x.reshape((count, x.shape[0] // count) + x.shape[1:]))

  def micro_step(carry, micro_batch):
    grad_sum, metric_sum, batch_stats = carry
    index, micro_images, micro_targets = micro_batch
    grads, step_metrics, batch_stats = _grads(state, batch_stats, micro_images, micro_targets,
                                              jax.random.fold_in(rng, index), recipe)
    add = functools.partial(jax.tree.map, jnp.add)
    return (add(grad_sum, grads), add(metric_sum, step_metrics), batch_stats), None

  zeros = functools.partial(jax.tree.map, jnp.zeros_like)
  metric_zeros = {k: jnp.zeros((), jnp.float32) for k in ('train_loss', 'total_loss',
                                                           'train_accuracy')}
  (grad_sum, metric_sum, batch_stats), _ = jax.lax.scan(
      micro_step, (zeros(state.params), metric_zeros, state.batch_stats),
      (jnp.arange(count), split(images), split(targets)))
  mean = functools.partial(jax.tree.map, lambda total: total / count)
  return mean(grad_sum), mean(metric_sum), batch_stats


def eval_step(state: TrainState, batch: dict, *, normalize: Callable,
              recipe: Recipe = Recipe()) -> dict:
  """Summed loss, top-1 and top-5 hits and example count over the masked global batch; with
  recipe.tta_flip or recipe.tta_translate also 'tta_loss' and 'tta_correct', from the mean
  logits of the image's views (`_tta_logits`); with recipe.ema_decay also 'ema_loss' and
  'ema_correct', from the averaged variables.

  batch: image uint8 [per_device_batch, h, w, c], label int32 [...], mask float32 [...] (0 = padding).
  """
  images, labels, mask = normalize(batch['image']), batch['label'], batch['mask']
  logits = _evaluation_logits(state, _variables(state.params, state.batch_stats), images)
  top_k = jax.lax.top_k(logits, min(5, logits.shape[-1]))[1]
  masked_sum = lambda values: jnp.sum(values * mask)
  sums = {'top5_correct': masked_sum(jnp.any(top_k == labels[:, None], -1)),
          'count': jnp.sum(mask)}

  def score(prefix: str, scored_logits: jnp.ndarray) -> None:
    sums[f'{prefix}loss'] = masked_sum(cross_entropy(scored_logits, labels))
    sums[f'{prefix}correct'] = masked_sum(jnp.argmax(scored_logits, -1) == labels)

  score('', logits)
  if recipe.tta_flip or recipe.tta_translate:
    score('tta_', _tta_logits(state, batch['image'], images, logits, normalize, recipe))
  if recipe.ema_decay:
    score('ema_', _evaluation_logits(state, state.ema, images))
  return parallel.sum(sums)


def _tta_logits(state: TrainState, raw: jnp.ndarray, images: jnp.ndarray, logits: jnp.ndarray,
                normalize: Callable, recipe: Recipe) -> jnp.ndarray:
  """Float32 logits [n, classes] averaged over the test-time views of raw images [n, h, w, c]
  (images: them normalised; logits: theirs): each with its mirror under recipe.tta_flip, and
  with recipe.tta_translate = p the mean over the views shifted by (p, p) and (-p, -p) weighs
  half."""
  variables = _variables(state.params, state.batch_stats)

  def with_mirror(images, plain=None):
    plain = _evaluation_logits(state, variables, images) if plain is None else plain
    if not recipe.tta_flip:
      return plain.astype(jnp.float32)
    mirrored = _evaluation_logits(state, variables, images[:, :, ::-1])
    return (plain.astype(jnp.float32) + mirrored.astype(jnp.float32)) / 2

  untranslated = with_mirror(images, logits)
  p = recipe.tta_translate
  if not p:
    return untranslated
  # Zero-fill in pixel space before normalising, as the training crop pads (augment.random_crop).
  padded = jnp.pad(raw, ((0, 0), (p, p), (p, p), (0, 0)))
  height, width = raw.shape[1:3]
  shifted = [padded[:, 2 * p:2 * p + height, 2 * p:2 * p + width],  # Content moves up-left.
             padded[:, :height, :width]]  # Down-right.
  translated = sum(with_mirror(normalize(view)) for view in shifted) / len(shifted)
  return (untranslated + translated) / 2


def infer_step(state: TrainState, images: jnp.ndarray, *, normalize: Callable) -> jnp.ndarray:
  """Logits [per_device_batch, classes] in evaluation mode for uint8 images [per_device_batch, h, w, c]."""
  return _evaluation_logits(state, _variables(state.params, state.batch_stats), normalize(images))


def _evaluation_logits(state: TrainState, variables: dict, inputs: jnp.ndarray) -> jnp.ndarray:
  """The model in evaluation mode on normalised inputs [n, h, w, c] -> logits [n, classes]."""
  return state.apply_fn(variables, inputs, train=False)

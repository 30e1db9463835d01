"""The pure per-device steps and the state they carry.

`train_step` and `eval_step` see one device's share of a batch and average across devices
through `parallel.mean` and `parallel.sum`; `builder` makes them data-parallel, and the loop in
`train` only sees replicated states and sharded batches, never devices.
"""
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from convjax import parallel


class TrainState(train_state.TrainState):
  """Parameters, optimiser state and step, plus:

  batch_stats: batch-norm running averages ({} for models without batch norm).
  rng: a raw uint32[2] key; step s on device d draws dropout from fold_in(fold_in(rng, s), d).
  """
  batch_stats: Any
  rng: jax.Array


def create_train_state(model, tx: optax.GradientTransformation, input_shape, seed: int) -> TrainState:
  """A fresh state; input_shape is (height, width, channels)."""
  init_key, dropout_key = jax.random.split(jax.random.PRNGKey(seed))
  dummy = jnp.zeros((1,) + tuple(input_shape), jnp.float32)
  variables = jax.jit(functools.partial(model.init, train=False))(init_key, dummy)
  return TrainState.create(apply_fn=model.apply, params=variables['params'], tx=tx,
                           batch_stats=variables.get('batch_stats', {}), rng=dropout_key)


def cross_entropy(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
  """Softmax cross-entropy per example: logits [batch, classes], int labels [batch] -> [batch]."""
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


def _variables(state: TrainState, params) -> dict:
  return {'params': params, 'batch_stats': state.batch_stats}


def train_step(state: TrainState, batch: dict, *, normalize: Callable, schedule: optax.Schedule,
               aux_loss_weight: float = 0.0,
               skip_nonfinite: bool = False) -> tuple[TrainState, dict]:
  """One SGD step on one device's share of the global batch.

  Gradients and metrics are averaged over all devices. Batch-norm layers normalise with this
  device's batch statistics; the running averages are then averaged over devices so every
  replica holds the same state (the flax ImageNet example's choice).

  Args:
    state: this device's replica.
    batch: image uint8 [per_device_batch, h, w, c], label int32 [per_device_batch].
    normalize: uint8 images -> model input.
    schedule: the learning rate by step, for logging.
    aux_loss_weight: weight of the auxiliary classifiers' losses (GoogLeNet), for models that
      sow 'aux_logits' into 'intermediates'; train_loss reports the main classifier's loss.
    skip_nonfinite: when the loss or a gradient is NaN or Inf, keep the parameters, optimiser
      state and batch statistics as they were (the step counter still advances).
  Returns:
    The new state and {'train_loss', 'train_accuracy', 'learning_rate', 'finite'}, where
    finite (bool) says the averaged loss and gradients were finite, the same on every device.
  """
  images, labels = normalize(batch['image']), batch['label']
  dropout_rng = jax.random.fold_in(jax.random.fold_in(state.rng, state.step), parallel.device_index())

  def loss_fn(params):
    logits, updates = state.apply_fn(_variables(state, params), images, train=True,
                                     rngs={'dropout': dropout_rng},
                                     mutable=['batch_stats', 'intermediates'])
    loss = cross_entropy(logits, labels).mean()
    aux_logits = updates.get('intermediates', {}).get('aux_logits', ())
    aux_loss = sum(cross_entropy(aux, labels).mean() for aux in aux_logits)
    return loss + aux_loss_weight * aux_loss, (loss, logits, updates)

  (total, (loss, logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  grads = parallel.mean(grads)
  batch_stats = parallel.mean(updates.get('batch_stats', {}))
  new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  step_metrics = parallel.mean({'train_loss': loss, 'total_loss': total,
                                'train_accuracy': jnp.mean(jnp.argmax(logits, -1) == labels)})
  # From averaged values, so every device takes the same decision.
  finite = jnp.isfinite(step_metrics.pop('total_loss')) & jnp.isfinite(optax.tree.norm(grads))
  if skip_nonfinite:
    keep = functools.partial(jax.tree.map, lambda new, old: jnp.where(finite, new, old))
    new_state = new_state.replace(params=keep(new_state.params, state.params),
                                  opt_state=keep(new_state.opt_state, state.opt_state),
                                  batch_stats=keep(new_state.batch_stats, state.batch_stats))
  step_metrics['learning_rate'] = schedule(state.step)
  step_metrics['finite'] = finite
  return new_state, step_metrics


def eval_step(state: TrainState, batch: dict, *, normalize: Callable) -> dict:
  """Summed loss, top-1 and top-5 hits and example count over the masked global batch.

  batch: image uint8 [per_device_batch, h, w, c], label int32 [...], mask float32 [...] (0 = padding).
  """
  logits = infer_step(state, batch['image'], normalize=normalize)
  labels, mask = batch['label'], batch['mask']
  top_k = jax.lax.top_k(logits, min(5, logits.shape[-1]))[1]
  return parallel.sum({
      'loss': jnp.sum(cross_entropy(logits, labels) * mask),
      'correct': jnp.sum((top_k[:, 0] == labels) * mask),
      'top5_correct': jnp.sum(jnp.any(top_k == labels[:, None], -1) * mask),
      'count': jnp.sum(mask),
  })


def infer_step(state: TrainState, images: jnp.ndarray, *, normalize: Callable) -> jnp.ndarray:
  """Logits [per_device_batch, classes] in evaluation mode for uint8 images [per_device_batch, h, w, c]."""
  return state.apply_fn(_variables(state, state.params), normalize(images), train=False)

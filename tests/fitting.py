"""Overfitting a handful of real examples: the smallest proof that a model, its data and the
training step fit together (used by the sound, video and text tests)."""
import functools

import jax.numpy as jnp
import optax

from convjax import parallel
from convjax.data import datasets
from convjax.training import steps


def fitted_accuracy(model, info: datasets.DatasetInfo, examples, labels, learning_rate: float,
                    num_steps: int) -> float:
  """Trains `model` with Adam on examples [n, *shape] and labels [n] (one device, the train step
  experiments use, the dataset's normalisation) for num_steps full-batch steps; returns its
  accuracy on those same examples."""
  examples, labels = jnp.asarray(examples), jnp.asarray(labels)
  normalize = lambda x: datasets.normalize(x, info.mean, info.std)
  dp = parallel.DataParallel(1)
  state = dp.replicate(steps.create_train_state(model, optax.adam(learning_rate),
                                                examples.shape[1:], seed=0))
  step = dp.pmap_step(functools.partial(
      steps.train_step, normalize=normalize,
      schedule=optax.constant_schedule(learning_rate), recipe=steps.Recipe()))
  for _ in range(num_steps):
    state, _ = step(state, dp.shard({'image': examples, 'label': labels}))
  state = dp.unreplicate(state)
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  logits = model.apply(variables, normalize(examples))
  return float((jnp.argmax(logits, -1) == labels).mean())

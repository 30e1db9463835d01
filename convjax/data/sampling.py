"""Which examples each batch holds: pure functions of (seed, step), shared by both pipelines.

Epoch e visits the training set in the order `epoch_order(n, seed, e)`. Global training batch
`step` is slice `step % steps_per_epoch` of its epoch's order, and device g of the data-parallel
axis (counted over every process) takes the g-th contiguous part of it. So a run resumed at step
s reads exactly the examples an uninterrupted run reads there: within an epoch nothing repeats
and nothing is skipped, whatever happened before.

Evaluation walks the split in order in global batches; the last one is padded with copies of
the final example whose mask is 0, so every example counts exactly once for any batch size and
any device count.
"""
import functools

import numpy as np


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  """Training drops the last partial batch, so every step sees a full global batch."""
  return num_examples // batch_size


@functools.lru_cache(maxsize=2)  # The current epoch, and the next one near a boundary.
def epoch_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
  """The permutation int64 [num_examples] that epoch `epoch` visits the examples in."""
  order = np.random.default_rng([seed, epoch]).permutation(num_examples)
  order.flags.writeable = False  # Shared through the cache.
  return order


def train_indices(num_examples: int, batch_size: int, seed: int, step: int,
                  first: int = 0, count: int | None = None) -> np.ndarray:
  """Example indices at positions first .. first + count - 1 of global training batch `step`.

  A process or device asks for its own part: first = its offset in the global batch.
  """
  epoch, index = divmod(step, steps_per_epoch(num_examples, batch_size))
  start = index * batch_size + first
  count = batch_size - first if count is None else count
  return epoch_order(num_examples, seed, epoch)[start:start + count]


def num_eval_batches(num_examples: int, batch_size: int) -> int:
  return -(-num_examples // batch_size)


def eval_indices(num_examples: int, batch_size: int, batch: int, first: int = 0,
                 count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(indices int64 [count], mask float32 [count]) at positions first.. of evaluation batch `batch`.

  Positions past the end of the split repeat the last example with mask 0.
  """
  count = batch_size - first if count is None else count
  positions = batch * batch_size + first + np.arange(count)
  mask = (positions < num_examples).astype(np.float32)
  return np.minimum(positions, num_examples - 1), mask

"""AdamW whose update runs as one pass per parameter on CPU.

optax.adamw computes, per parameter p with gradient g, moments m and v and step t:

  m' = (1 - b1) g + b1 m        v' = (1 - b2) g^2 + b2 v
  u  = (m' / (1 - b1^t)) / (sqrt(v' / (1 - b2^t)) + eps) + wd p      (wd: kernels only)
  p' = p - rate u

and XLA:CPU runs these as several loops over each parameter. In the main job (LeNet-5, 61,706
parameters) that made the step about 2 ms slower than SGD's one-pass update, most of it in
the oneDNN calls the loops ran beside (PERFORMANCE.md, "AdamW's share of the main job's step").
`fused_adamw` is the same optimiser (optax's own `init` and `update`, so state and checkpoints
are unchanged) with one more method, `apply`, that the train step calls instead of `update` +
`apply_updates`: under the 'onednn' backend each float32 parameter is updated by the
extension's `convjax_adamw` (native/fused_adamw.cc) in one pass that also sums the squared
gradient, the parameter and moments written in place as fused_sgd's are. It rounds each
operation on its own, so it gives optax's numbers run op by op bit for bit
(tests/test_fused_update.py). XLA's fused program of optax's update rounds the last bit of some
elements differently (it contracts multiply-adds, for one), so a run's numbers move by rounding.
Elsewhere `apply` is optax's own update and apply_updates.
"""
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from convjax.nn import conv_backend, onednn
from convjax.training import fused_sgd


class FusedAdamW(NamedTuple):
  """An optax.GradientTransformation (init, update) plus `apply(grads, state, params) ->
  (new params, new state, sum of squared gradients)`, the one-pass update."""
  init: Callable
  update: Callable
  apply: Callable


def fused_adamw(schedule: optax.Schedule, b1: float, b2: float, eps: float,
                weight_decay: float = 0.0, mask: Callable | None = None) -> FusedAdamW:
  """optax.adamw(schedule, b1, b2, eps, weight_decay=weight_decay, mask=mask), as
  `optimizer._base_optimizer` builds it, with the fused `apply`."""
  tx = optax.adamw(schedule, b1, b2, eps, weight_decay=weight_decay, mask=mask)

  def apply(grads, state, params):
    adam = fused_sgd.find(state, optax.ScaleByAdamState)
    if not _native(params, adam, grads):  # optax itself: its numbers by definition.
      updates, new_state = tx.update(grads, state, params)
      return (optax.apply_updates(params, updates), new_state,
              optax.tree.norm(grads, squared=True))
    decayed = mask(params) if mask else jax.tree.map(lambda _: True, params)
    decays = jax.tree.map(lambda flag: weight_decay if flag else 0.0, decayed)
    count = optax.safe_int32_increment(adam.count)
    # As optax.tree.bias_correction computes them, so the powers round alike.
    corrections = ((1 - b1 ** count).astype(jnp.float32), (1 - b2 ** count).astype(jnp.float32))
    rate = jnp.asarray(schedule(fused_sgd.find(state, optax.ScaleByScheduleState).count),
                       jnp.float32)
    scalars = jnp.stack([rate, *corrections])
    leaves = jax.tree.map(
        lambda p, m, v, g, wd: update_leaf(p, m, v, g, scalars, b1, b2, eps, wd),
        params, adam.mu, adam.nu, grads, decays)
    pick = lambda i: jax.tree.map(lambda _, leaf: leaf[i], params, leaves)
    new_adam = optax.ScaleByAdamState(count=count, mu=pick(1), nu=pick(2))
    squares = sum(jax.tree.leaves(pick(3)))
    return pick(0), _replace(state, new_adam), squares

  return FusedAdamW(tx.init, tx.update, apply)


def _native(params, adam: optax.ScaleByAdamState, grads) -> bool:
  """Whether the extension updates these: the 'onednn' backend, and every array float32."""
  arrays = jax.tree.leaves((params, adam.mu, adam.nu, grads))
  return (conv_backend.backend_name() == 'onednn'
          and all(a.dtype == jnp.float32 for a in arrays))


def update_leaf(p, m, v, g, scalars, b1: float, b2: float, eps: float, weight_decay: float):
  """(p', m', v', sum(g^2)) for one float32 parameter p, its moments m and v and gradient g
  (the module's formula), by the extension. scalars: float32 [3], the schedule's rate, 1 - b1^t
  and 1 - b2^t."""
  if not p.size:
    return p, m, v, jnp.zeros((), jnp.float32)
  onednn.library()  # Registers the target.
  out = jax.ShapeDtypeStruct(p.shape, jnp.float32)
  return jax.ffi.ffi_call(
      'convjax_adamw', (out, out, out, jax.ShapeDtypeStruct((), jnp.float32)),
      vmap_method='sequential', input_output_aliases={0: 0, 1: 1, 2: 2})(
          p, m, v, g, scalars, b1=np.float32(b1), one_minus_b1=np.float32(1 - b1),
          b2=np.float32(b2), one_minus_b2=np.float32(1 - b2), eps=np.float32(eps),
          weight_decay=np.float32(weight_decay), threads=np.int64(conv_backend.onednn_threads()))


def _replace(state, adam: optax.ScaleByAdamState):
  """The state after one step: the new moments and count, and the schedule's count advanced."""
  def advance(node):
    if isinstance(node, optax.ScaleByAdamState):
      return adam
    if isinstance(node, optax.ScaleByScheduleState):
      return optax.ScaleByScheduleState(count=optax.safe_int32_increment(node.count))
    return node
  return jax.tree.map(advance, state, is_leaf=lambda n: isinstance(
      n, (optax.ScaleByAdamState, optax.ScaleByScheduleState)))

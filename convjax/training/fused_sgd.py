"""SGD with momentum whose update runs as one pass per parameter on CPU.

optax computes SGD with momentum and L2 weight decay as a chain of tree maps, and flax then adds
the updates to the parameters:

  g  = grad + wd * p        t' = g + momentum * t        u = t' (Nesterov: g + momentum * t')
  p' = p - rate * u

XLA:CPU runs these as several loops over each parameter, plus a copy of any parameter it must
read after writing, and the train step reads every gradient once more for its finiteness check.
On AlexNet (58.6M fully connected weights) that was a third of a step. `fused_sgd` is the same
optimiser (optax's own `init` and `update`, state and checkpoints unchanged) with one more method,
`apply`, that the train step calls instead of `update` + `apply_updates`: under the 'onednn'
backend each float32 parameter is updated by the extension's `convjax_sgd_momentum`
(native/fused_sgd.cc) in one pass that also sums the squared gradient; elsewhere by the same
formula in XLA. Both give optax's numbers bit for bit (tests/test_fused_update.py).

The pass writes the parameter and trace in place (input_output_aliases), into the train state's
donated buffers. That needs the state whole on each device (parallel.REPLICATED): a slice of a
stacked [devices, ...] state reaches the call through a reshape, and XLA:CPU then copies every
parameter and trace into the call and out of it again.
"""
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from convjax.nn import conv_backend, onednn


class FusedSGD(NamedTuple):
  """An optax.GradientTransformation (init, update) plus `apply(grads, state, params) ->
  (new params, new state, sum of squared gradients)`, the one-pass update."""
  init: Callable
  update: Callable
  apply: Callable


def fused_sgd(schedule: optax.Schedule, momentum: float, nesterov: bool = False,
              weight_decay: float = 0.0, mask: Callable | None = None) -> FusedSGD:
  """optax.sgd(schedule, momentum, nesterov), after add_decayed_weights(weight_decay, mask)
  where weight_decay is not 0, as `_base_optimizer` builds it, with the fused `apply`."""
  tx = optax.sgd(schedule, momentum=momentum, nesterov=nesterov)
  if weight_decay:
    tx = optax.chain(optax.add_decayed_weights(weight_decay, mask=mask), tx)

  def apply(grads, state, params):
    decayed = mask(params) if mask else jax.tree.map(lambda _: True, params)
    decays = jax.tree.map(lambda flag: weight_decay if flag else 0.0, decayed)
    trace, count = find(state, optax.TraceState).trace, find(
        state, optax.ScaleByScheduleState).count
    rate = jnp.asarray(schedule(count), jnp.float32)
    leaves = jax.tree.map(
        lambda p, t, g, wd: update_leaf(p, t, g, rate, momentum, wd, nesterov), params, trace,
        grads, decays)
    pick = lambda i: jax.tree.map(lambda _, leaf: leaf[i], params, leaves)
    new_params, new_trace = pick(0), pick(1)
    squares = sum(jax.tree.leaves(pick(2)))
    return new_params, _replace(state, new_trace), squares

  return FusedSGD(tx.init, tx.update, apply)


def update_leaf(p, t, g, rate, momentum: float, weight_decay: float, nesterov: bool):
  """(p', t', sum(g^2)) for one parameter p, its trace t and gradient g (the module's formula):
  by the extension under the 'onednn' backend for float32, else in XLA. rate: a float32 []."""
  if (conv_backend.backend_name() == 'onednn' and p.dtype == t.dtype == g.dtype == jnp.float32
      and p.size):
    onednn.library()  # Registers the target.
    out = jax.ShapeDtypeStruct(p.shape, jnp.float32)
    return jax.ffi.ffi_call(
        'convjax_sgd_momentum', (out, out, jax.ShapeDtypeStruct((), jnp.float32)),
        vmap_method='sequential', input_output_aliases={0: 0, 1: 1})(
            p, t, g, rate, momentum=np.float32(momentum), weight_decay=np.float32(weight_decay),
            nesterov=np.int64(nesterov), threads=np.int64(conv_backend.onednn_threads()))
  decayed = g + weight_decay * p if weight_decay else g
  traced = decayed + momentum * t
  update = decayed + momentum * traced if nesterov else traced
  new_p = (p + (-rate).astype(p.dtype) * update).astype(p.dtype)
  return new_p, traced, jnp.sum(jnp.square(g.astype(jnp.float32)))


def find(state, kind) -> Any:
  """The one node of type `kind` in an optax state."""
  found = [node for node in jax.tree.leaves(state, is_leaf=lambda n: isinstance(n, kind))
           if isinstance(node, kind)]
  if len(found) != 1:
    raise ValueError(f'fused_sgd: expected one {kind.__name__} in the optimiser state, '
                     f'found {len(found)}')
  return found[0]


def _replace(state, trace):
  """The state after one step: the new trace, and the schedule's count advanced (as optax)."""
  def advance(node):
    if isinstance(node, optax.TraceState):
      return optax.TraceState(trace=trace)
    if isinstance(node, optax.ScaleByScheduleState):
      return optax.ScaleByScheduleState(count=optax.safe_int32_increment(node.count))
    return node
  return jax.tree.map(advance, state, is_leaf=lambda n: isinstance(
      n, (optax.TraceState, optax.ScaleByScheduleState)))

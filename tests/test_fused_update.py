"""The one-pass SGD and AdamW updates against optax's, bit for bit, on both backends, and in the
step."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from convjax import parallel
from convjax.data import datasets
from convjax.nn import conv_backend, onednn
from convjax.training import builder, fused_adamw, fused_sgd, optimizer

BACKENDS = ['xla'] + (['onednn'] if onednn.available() else [])


def _params():
  """Parameters off any vector width and thread split (one of 70,000 elements), kernels and
  biases (only kernels decay)."""
  rng = np.random.default_rng(0)
  shapes = {'conv': {'kernel': (3, 3, 5, 7), 'bias': (7,)}, 'big': {'kernel': (350, 200)},
            'scalar_like': {'bias': (1,)}}
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s), jnp.float32), shapes,
                      is_leaf=lambda s: isinstance(s, tuple))


def _grads(params, step):
  return jax.tree.map(lambda p: jnp.cos(p * (step + 1.7)) * 0.3, params)


def _optax_steps(tx, params, steps, jitted: bool = False):
  """optax's update and apply_updates, op by op or (jitted) as one compiled program."""
  def step_fn(grads, state, params):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state
  step_fn = jax.jit(step_fn) if jitted else step_fn
  state = tx.init(params)
  for step in range(steps):
    params, state = step_fn(_grads(params, step), state, params)
  return params, state


_SCHEDULE = optax.linear_schedule(0.1, 0.01, 3)
_MASK = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)


def _check_three_steps(tx, reference, backend: str, target: str, jitted_reference: bool = False):
  """Three jitted steps of tx.apply on `backend`: the extension's `target` in the program
  exactly there, the same parameters and state as `reference` (optax) bit for bit, and the
  squared gradient norm optax would compute."""
  params = _params()
  expected = _optax_steps(reference, params, 3, jitted_reference)
  conv_backend.use_backend(backend)
  try:
    apply = jax.jit(tx.apply)
    program = str(jax.make_jaxpr(tx.apply)(_grads(params, 0), tx.init(params), params))
    assert (target in program) == (backend == 'onednn')
    state = tx.init(params)
    for step in range(3):
      params, state, squares = apply(_grads(params, step), state, params)
  finally:
    conv_backend.use_backend('auto')
  jax.tree.map(np.testing.assert_array_equal, (params, state), expected)
  last = _grads(_optax_steps(reference, _params(), 2)[0], 2)
  np.testing.assert_allclose(squares, optax.tree.norm(last, squared=True), rtol=1e-5)


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('nesterov', [False, True])
@pytest.mark.parametrize('weight_decay', [0.0, 5e-4])
def test_apply_equals_optax_update_bit_for_bit(backend, nesterov, weight_decay):
  """SGD on a decaying schedule, against optax's update and apply_updates."""
  tx = fused_sgd.fused_sgd(_SCHEDULE, 0.9, nesterov, weight_decay, _MASK)
  reference = optax.sgd(_SCHEDULE, momentum=0.9, nesterov=nesterov)
  if weight_decay:
    reference = optax.chain(optax.add_decayed_weights(weight_decay, mask=_MASK), reference)
  _check_three_steps(tx, reference, backend, 'convjax_sgd_momentum')


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('weight_decay', [0.0, 0.05])
def test_adamw_apply_equals_optax_update_bit_for_bit(backend, weight_decay):
  """AdamW, whose bias corrections still move over three steps, against optax.adamw. The
  extension rounds each operation on its own, as optax run op by op does; XLA's fused program
  of the same update rounds a few elements differently (contracting multiply-adds), and is what
  `apply` runs on the XLA backend, so that backend is held to the jitted reference."""
  tx = fused_adamw.fused_adamw(_SCHEDULE, 0.9, 0.999, 1e-8, weight_decay, _MASK)
  reference = optax.adamw(_SCHEDULE, 0.9, 0.999, 1e-8, weight_decay=weight_decay, mask=_MASK)
  _check_three_steps(tx, reference, backend, 'convjax_adamw', jitted_reference=backend == 'xla')


def test_the_optimizer_is_fused_only_where_the_config_asks(digits_config):
  schedule = optax.constant_schedule(0.1)
  digits_config.update(optimizer='nesterov', fused_update=True)
  fused = (fused_sgd.FusedSGD, fused_adamw.FusedAdamW)
  assert isinstance(optimizer.create_optimizer(digits_config, schedule), fused_sgd.FusedSGD)
  digits_config.optimizer = 'adamw'
  assert isinstance(optimizer.create_optimizer(digits_config, schedule), fused_adamw.FusedAdamW)
  for fields in (dict(fused_update=False), dict(optimizer='adam'),
                 dict(optimizer='adamw', fused_update=False),
                 dict(freeze='backbone', model='resnet18')):
    digits_config.update(optimizer='nesterov', fused_update=True)
    digits_config.update(fields)
    assert not isinstance(optimizer.create_optimizer(digits_config, schedule), fused)


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('name, weight_decay', [('momentum', 5e-4), ('adamw', 0.05)])
def test_train_steps_are_the_same_fused_or_not(digits_config, backend, name, weight_decay):
  """The built, pmapped step with weight decay: the same state after two steps either way, and
  the finite flag set. SGD's is the same bit for bit. AdamW's is the same to float32 rounding:
  the extension rounds as optax op by op does, and XLA fuses the two steps' programs differently,
  each rounding a few elements its own way."""
  digits_config.update(batch_size=32, optimizer=name, weight_decay=weight_decay,
                       conv_backend=backend)
  dp = parallel.DataParallel()
  split = datasets.load('digits', image_size=28).train
  batch = dp.shard({'image': split.images[:32], 'label': split.labels[:32]})
  states = []
  for fused in (True, False):
    digits_config.fused_update = fused
    run = builder.build(digits_config, dp, builder.DataSpec((28, 28, 1), 10, (0.3,), (0.4,),
                                                           len(split)))
    state = dp.replicate(run.init_state())
    for _ in range(2):
      state, step_metrics = run.p_train_step(state, batch)
    assert bool(step_metrics['finite'][0])
    states.append(jax.device_get((state.params, state.opt_state)))
  conv_backend.use_backend('auto')
  if name == 'momentum':
    jax.tree.map(np.testing.assert_array_equal, *states)
  else:
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-7), *states)

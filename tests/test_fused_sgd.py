"""The one-pass SGD update against optax's chain, bit for bit, on both backends, and in the step."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from convjax import parallel
from convjax.data import datasets
from convjax.nn import conv_backend, onednn
from convjax.training import builder, fused_sgd, optimizer

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


def _optax_steps(tx, params, steps):
  state = tx.init(params)
  for step in range(steps):
    updates, state = tx.update(_grads(params, step), state, params)
    params = optax.apply_updates(params, updates)
  return params, state


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('nesterov', [False, True])
@pytest.mark.parametrize('weight_decay', [0.0, 5e-4])
def test_apply_equals_optax_update_bit_for_bit(backend, nesterov, weight_decay):
  """Three jitted steps on a decaying schedule: the same parameters and state as optax's
  update and apply_updates, bit for bit, and the squared gradient norm optax would compute."""
  schedule = optax.linear_schedule(0.1, 0.01, 3)
  mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
  tx = fused_sgd.fused_sgd(schedule, 0.9, nesterov, weight_decay, mask)
  reference = optax.sgd(schedule, momentum=0.9, nesterov=nesterov)
  if weight_decay:
    reference = optax.chain(optax.add_decayed_weights(weight_decay, mask=mask), reference)
  params = _params()
  expected = _optax_steps(reference, params, 3)
  conv_backend.use_backend(backend)
  try:
    apply = jax.jit(tx.apply)
    program = str(jax.make_jaxpr(tx.apply)(_grads(params, 0), tx.init(params), params))
    assert ('convjax_sgd_momentum' in program) == (backend == 'onednn')
    state = tx.init(params)
    for step in range(3):
      params, state, squares = apply(_grads(params, step), state, params)
  finally:
    conv_backend.use_backend('auto')
  jax.tree.map(np.testing.assert_array_equal, (params, state), expected)
  last = _grads(_optax_steps(reference, _params(), 2)[0], 2)
  np.testing.assert_allclose(squares, optax.tree.norm(last, squared=True), rtol=1e-5)


def test_the_optimizer_is_fused_only_where_the_config_asks(digits_config):
  schedule = optax.constant_schedule(0.1)
  digits_config.update(optimizer='nesterov', fused_update=True)
  assert isinstance(optimizer.create_optimizer(digits_config, schedule), fused_sgd.FusedSGD)
  for fields in (dict(fused_update=False), dict(optimizer='adam'),
                 dict(freeze='backbone', model='resnet18')):
    digits_config.update(optimizer='nesterov', fused_update=True)
    digits_config.update(fields)
    assert not isinstance(optimizer.create_optimizer(digits_config, schedule),
                          fused_sgd.FusedSGD)


@pytest.mark.parametrize('backend', BACKENDS)
def test_train_steps_are_the_same_fused_or_not(digits_config, backend):
  """The built, pmapped step with weight decay: the same state after two steps either way, and
  the finite flag set."""
  digits_config.update(batch_size=32, optimizer='momentum', weight_decay=5e-4,
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
  jax.tree.map(np.testing.assert_array_equal, *states)

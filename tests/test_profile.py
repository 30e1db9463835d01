"""convjax.analysis.profile: classes of a compiled program's operations, and a profiled step."""
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from convjax.analysis import profile
from convjax.nn import conv_backend


class _Net(nn.Module):
  """One of each class: a convolution, batch norm + ReLU, max pooling and a dense layer."""

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(8, (3, 3))(x)
    x = nn.relu(nn.BatchNorm(use_running_average=False)(x))
    x = nn.max_pool(x, (2, 2), (2, 2))
    return nn.Dense(5)(x.reshape(x.shape[0], -1))


def _step_and_program():
  model, tx = _Net(), optax.sgd(0.1, momentum=0.9)
  x = jnp.ones((4, 8, 8, 3))
  variables = model.init(jax.random.PRNGKey(0), x)
  params = variables['params']

  def step(carry):
    params, opt_state = carry
    def loss(p):
      logits, _ = model.apply({'params': p, 'batch_stats': variables['batch_stats']}, x,
                              mutable=['batch_stats'])
      return jnp.mean(logits ** 2)
    grads = jax.grad(loss)(params)
    with jax.named_scope('optimizer'):
      updates, opt_state = tx.update(grads, opt_state)
      return optax.apply_updates(params, updates), opt_state

  conv_backend.use_backend('xla')  # The convolution a lax one, whatever is built.
  try:
    step = jax.jit(step)
    carry = (params, tx.init(params))
    return step, carry, step.lower(carry).compile().as_text()
  finally:
    conv_backend.use_backend('auto')


def test_every_class_of_a_small_train_step_is_found():
  _, _, hlo = _step_and_program()
  classes = set(profile.op_classes(hlo).values())
  assert {'convolution', 'dense', 'normalisation', 'pooling', 'optimiser'} <= classes
  assert classes <= set(profile.CLASSES)


def test_classify_prefers_the_costliest_content():
  op = lambda opcode, name='': profile._Op(opcode, name, '', [])
  bn = 'transpose(jvp(Net))/Block_0/BatchNorm_1/mul'
  assert profile.classify([op('fusion'), op('multiply', bn), op('convolution')]) == 'convolution'
  assert profile.classify([op('fusion'), op('multiply', bn), op('maximum')]) == 'normalisation'
  assert profile.classify([op('fusion'), op('add', 'jit(step)/optimizer/add')]) == 'optimiser'
  assert profile.classify([op('copy')]) == 'layout copies'
  assert profile.classify([op('custom-call') for _ in range(1)]) == 'elementwise and other'
  call = lambda target: profile.classify([profile._Op('custom-call', '', target, [])])
  assert call('convjax_conv_backward_data') == 'convolution'
  assert call('convjax_batch_norm_forward') == 'normalisation'


def test_a_profiled_step_accounts_for_its_time():
  step, carry, hlo = _step_and_program()
  carry = jax.block_until_ready(step(carry))
  result = profile.profile(step, carry, hlo, steps=3)
  assert set(result['classes']) == set(profile.CLASSES)
  assert result['classes']['convolution'] > 0 and result['classes']['dense'] > 0
  assert abs(result['total_ms'] - sum(result['classes'].values())) < 1e-9
  # Operations run side by side on a pool of one thread per core, never more.
  assert 0 < result['total_ms'] <= result['step_ms'] * len(os.sched_getaffinity(0))
  assert 'convolution' in profile.format_breakdown('net', result)

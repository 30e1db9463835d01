"""Batch normalisation through oneDNN against its formula and against flax's layer."""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convjax.nn import conv_backend, layers, onednn, onednn_norm

needs_onednn = pytest.mark.skipif(not onednn.available(),
                                  reason=f'oneDNN extension unavailable: {onednn.why_unavailable()}')


def _formula(x, scale, shift, epsilon, relu=False):
  """The definition, in float64: statistics over every axis but the last (biased variance)."""
  x = np.asarray(x, np.float64)
  axes = tuple(range(x.ndim - 1))
  mean, var = x.mean(axes), x.var(axes)
  y = (x - mean) / np.sqrt(var + epsilon) * scale + shift
  return np.maximum(y, 0) if relu else y, mean, var


@needs_onednn
@pytest.mark.parametrize('shape,threads,relu', [
    ((6, 1), 1, False), ((4, 5, 6, 3), 2, False), ((3, 7, 7, 17), 1, False),
    ((2, 4, 5, 5, 64), 2, False), ((4, 5, 6, 3), 2, True), ((3, 7, 7, 17), 1, True),
    ((2, 4, 5, 5, 64), 2, True)])
def test_values_statistics_and_gradients_follow_the_formula(shape, threads, relu):
  rng = np.random.default_rng(sum(shape))
  x = jnp.asarray(rng.normal(3, 2, shape), jnp.float32)  # Off-centre, as activations are.
  scale, shift = (jnp.asarray(rng.normal(m, 0.3, shape[-1]), jnp.float32) for m in (1, 0))
  got = onednn_norm.batch_norm(x, scale, shift, 1e-3, threads, relu)
  for mine, want in zip(got, _formula(x, scale, shift, 1e-3, relu)):
    np.testing.assert_allclose(mine, want, rtol=1e-5, atol=1e-5)
  if relu:  # About half the outputs clipped: the mask is really exercised.
    assert 0.3 < float(jnp.mean(got[0] == 0)) < 0.7
  # The gradient of a loss that reads all three outputs, against XLA's of the same formula.
  weights = [jnp.asarray(rng.normal(size=o.shape), jnp.float32) for o in got]
  loss = lambda fn: lambda *args: sum((o * w).sum() for o, w in zip(fn(*args), weights))
  def xla(x, scale, shift):
    mean, var = x.mean(tuple(range(x.ndim - 1))), x.var(tuple(range(x.ndim - 1)))
    y = (x - mean) * jax.lax.rsqrt(var + 1e-3) * scale + shift
    return jax.nn.relu(y) if relu else y, mean, var
  ours = jax.grad(loss(lambda *a: onednn_norm.batch_norm(*a, 1e-3, threads, relu)), (0, 1, 2))
  for mine, want in zip(ours(x, scale, shift), jax.grad(loss(xla), (0, 1, 2))(x, scale, shift)):
    np.testing.assert_allclose(mine, want, rtol=1e-4, atol=1e-4 * float(jnp.abs(want).max()))


needs_bfloat16 = pytest.mark.skipif(
    not onednn_norm.supports(jnp.ones((1, 1), jnp.bfloat16)),
    reason="this processor's oneDNN has no bfloat16 batch norm (or the extension is missing)")


@needs_bfloat16
@pytest.mark.parametrize('shape,relu', [((4, 5, 6, 3), False), ((3, 7, 7, 17), True),
                                        ((2, 4, 5, 5, 64), True)])
def test_bfloat16_activations_follow_the_float32_kernel(shape, relu):
  """bfloat16 x, y, dy and dx with float32 statistics: the statistics of the same (bfloat16)
  values as float32's, and y and the gradients within bfloat16's rounding of them."""
  rng = np.random.default_rng(sum(shape) + relu)
  x = jnp.asarray(rng.normal(3, 2, shape), jnp.bfloat16)
  scale, shift = (jnp.asarray(rng.normal(m, 0.3, shape[-1]), jnp.float32) for m in (1, 0))
  dy = jnp.asarray(rng.normal(size=shape), jnp.bfloat16)
  def run(x, dy):
    y, vjp = jax.vjp(lambda *a: onednn_norm.batch_norm(*a, 1e-3, 1, relu)[0], x, scale, shift)
    _, mean, var = onednn_norm.batch_norm(x, scale, shift, 1e-3, 1, relu)
    return (y, mean, var, *vjp(dy))
  half = run(x, dy)
  full = run(x.astype(jnp.float32), dy.astype(jnp.float32))
  assert [a.dtype for a in half] == [jnp.bfloat16, jnp.float32, jnp.float32, jnp.bfloat16,
                                     jnp.float32, jnp.float32]
  for name, mine, want, tolerance in zip(('y', 'mean', 'var', 'dx', 'dscale', 'dshift'), half,
                                         full, (1e-2, 1e-5, 1e-5, 2e-2, 1e-2, 1e-2)):
    mine, want = np.asarray(mine, np.float32), np.asarray(want, np.float32)
    np.testing.assert_allclose(mine, want, rtol=tolerance,
                               atol=tolerance * float(np.abs(want).max()), err_msg=name)


@needs_bfloat16
def test_a_bfloat16_layer_goes_to_onednn_and_trains_as_flax_computes_it():
  """layers.BatchNorm(dtype=bfloat16) on bfloat16 x, as the models build it with
  half_precision: oneDNN's call, flax's numbers to bfloat16's rounding."""
  x = (jax.random.normal(jax.random.PRNGKey(0), (8, 5, 5, 12)) * 2 + 1).astype(jnp.bfloat16)
  layer = layers.BatchNorm(use_running_average=False, dtype=jnp.bfloat16)
  variables = layer.init(jax.random.PRNGKey(1), x)
  def run(backend):
    conv_backend.use_backend(backend)
    try:
      def loss(params):
        y, updates = layer.apply({**variables, 'params': params}, x, mutable=['batch_stats'])
        return (y.astype(jnp.float32) * jnp.cos(y.astype(jnp.float32))).sum(), (y, updates)
      (_, (y, stats)), grads = jax.value_and_grad(loss, has_aux=True)(variables['params'])
      program = str(jax.make_jaxpr(lambda v: layer.apply(v, x, mutable=['batch_stats']))(variables))
      return y, stats, grads, program
    finally:
      conv_backend.use_backend('auto')
  y_xla, stats_xla, grads_xla, program_xla = run('xla')
  y_ours, stats_ours, grads_ours, program_ours = run('onednn')
  assert 'convjax_batch_norm_forward' in program_ours and y_ours.dtype == jnp.bfloat16
  assert 'convjax_batch_norm' not in program_xla
  np.testing.assert_allclose(np.asarray(y_ours, np.float32), np.asarray(y_xla, np.float32),
                             rtol=1e-2, atol=2e-2)
  for mine, theirs in zip(jax.tree.leaves((stats_ours, grads_ours)),
                          jax.tree.leaves((stats_xla, grads_xla))):
    np.testing.assert_allclose(mine, theirs, rtol=2e-2, atol=2e-2 * float(jnp.abs(theirs).max()))


@needs_bfloat16
@pytest.mark.parametrize('rows,channels', [(1, 1), (7, 3), (50, 17), (16 * 8 * 8, 64)])
def test_bfloat16_kernels_write_only_inside_their_buffers(rows, channels):
  for backward, relu in ((False, False), (False, True), (True, False)):
    for threads in (1, 2):
      assert onednn_norm.overrun_bytes(rows, channels, backward, threads=threads, relu=relu,
                                       dtype=jnp.bfloat16) == 0


def _apply(backend, variables, x, train=True, relu=False):
  conv_backend.use_backend(backend)
  try:
    layer = layers.BatchNorm(use_running_average=not train)
    def loss(params):
      y, updates = layer.apply({**variables, 'params': params}, x, relu=relu,
                               mutable=['batch_stats'])
      return (y * jnp.cos(y)).sum(), (y, updates['batch_stats'])
    (_, (y, stats)), grads = jax.value_and_grad(loss, has_aux=True)(variables['params'])
    program = str(jax.make_jaxpr(lambda v: layer.apply(v, x, mutable=['batch_stats']))(variables))
    return y, stats, grads, program
  finally:
    conv_backend.use_backend('auto')


@needs_onednn
@pytest.mark.parametrize('relu', [False, True])
def test_the_layer_trains_as_flax_computes_it(relu):
  """Same outputs, running averages and parameter gradients as flax's own computation (with
  the ReLU after it where fused), through the same variables; and the oneDNN call is really
  made, in training only."""
  x = jax.random.normal(jax.random.PRNGKey(0), (8, 5, 5, 12)) * 2 + 1
  variables = layers.BatchNorm(use_running_average=False).init(jax.random.PRNGKey(1), x)
  assert jax.tree.map(jnp.shape, variables) == {'params': {'scale': (12,), 'bias': (12,)},
                                                'batch_stats': {'mean': (12,), 'var': (12,)}}
  variables['params']['scale'] = variables['params']['scale'] * 1.5
  y_xla, stats_xla, grads_xla, program_xla = _apply('xla', variables, x, relu=relu)
  y_ours, stats_ours, grads_ours, program_ours = _apply('onednn', variables, x, relu=relu)
  assert 'convjax_batch_norm_forward' in program_ours
  assert 'convjax_batch_norm' not in program_xla
  np.testing.assert_allclose(y_ours, y_xla, rtol=1e-5, atol=1e-5)
  for mine, theirs in zip(jax.tree.leaves((stats_ours, grads_ours)),
                          jax.tree.leaves((stats_xla, grads_xla))):
    np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-4)
  # Evaluation reads the running averages: flax's path, whatever the backend.
  assert 'convjax_batch_norm' not in _apply('onednn', variables, x, train=False)[3]


@needs_onednn
def test_other_kinds_of_batch_norm_stay_with_flax():
  x = jnp.ones((4, 3, 3, 8))
  conv_backend.use_backend('onednn')
  try:
    for layer in (layers.BatchNorm(use_running_average=False, use_scale=False),
                  layers.BatchNorm(use_running_average=False, dtype=jnp.bfloat16),
                  layers.BatchNorm(use_running_average=False, axis=1)):
      variables = layer.init(jax.random.PRNGKey(0), x)
      program = str(jax.make_jaxpr(lambda v: layer.apply(v, x, mutable=['batch_stats']))(variables))
      assert 'convjax_batch_norm' not in program
    x16 = x.astype(jnp.bfloat16)
    layer = layers.BatchNorm(use_running_average=False)
    variables = layer.init(jax.random.PRNGKey(0), x16)
    program = str(jax.make_jaxpr(lambda v: layer.apply(v, x16, mutable=['batch_stats']))(variables))
    assert 'convjax_batch_norm' not in program
  finally:
    conv_backend.use_backend('auto')


def test_norm_act_fuses_only_batch_norm_with_relu():
  """norm_act asks BatchNorm for its fused ReLU; any other activation or norm is applied after."""
  x = jnp.linspace(-2, 2, 4 * 3 * 3 * 8).reshape(4, 3, 3, 8)
  calls = []

  class Recording(layers.BatchNorm):
    def __call__(self, x, use_running_average=None, *, mask=None, relu=False):
      calls.append(relu)
      return super().__call__(x, use_running_average, mask=mask, relu=relu)

  class Net(nn.Module):
    activation: Any

    @nn.compact
    def __call__(self, x):
      return layers.norm_act(Recording(use_running_average=True), self.activation, x)

  for activation, fused in ((nn.relu, True), (nn.gelu, False), (None, False)):
    calls.clear()
    net = Net(activation)
    y = net.apply(net.init(jax.random.PRNGKey(0), x), x)
    want = x / np.sqrt(1 + 1e-5)  # Running mean 0, var 1, scale 1, shift 0.
    want = activation(want) if activation else want
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
    assert calls[-1] is fused

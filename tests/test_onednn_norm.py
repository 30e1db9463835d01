"""Batch normalisation through oneDNN against its formula and against flax's layer."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convjax.nn import conv_backend, layers, onednn, onednn_norm

needs_onednn = pytest.mark.skipif(not onednn.available(),
                                  reason=f'oneDNN extension unavailable: {onednn.why_unavailable()}')


def _formula(x, scale, shift, epsilon):
  """The definition, in float64: statistics over every axis but the last (biased variance)."""
  x = np.asarray(x, np.float64)
  axes = tuple(range(x.ndim - 1))
  mean, var = x.mean(axes), x.var(axes)
  return (x - mean) / np.sqrt(var + epsilon) * scale + shift, mean, var


@needs_onednn
@pytest.mark.parametrize('shape,threads', [((6, 1), 1), ((4, 5, 6, 3), 2), ((3, 7, 7, 17), 1),
                                           ((2, 4, 5, 5, 64), 2)])
def test_values_statistics_and_gradients_follow_the_formula(shape, threads):
  rng = np.random.default_rng(sum(shape))
  x = jnp.asarray(rng.normal(3, 2, shape), jnp.float32)  # Off-centre, as activations are.
  scale, shift = (jnp.asarray(rng.normal(m, 0.3, shape[-1]), jnp.float32) for m in (1, 0))
  got = onednn_norm.batch_norm(x, scale, shift, 1e-3, threads)
  for mine, want in zip(got, _formula(x, scale, shift, 1e-3)):
    np.testing.assert_allclose(mine, want, rtol=1e-5, atol=1e-5)
  # The gradient of a loss that reads all three outputs, against XLA's of the same formula.
  weights = [jnp.asarray(rng.normal(size=o.shape), jnp.float32) for o in got]
  loss = lambda fn: lambda *args: sum((o * w).sum() for o, w in zip(fn(*args), weights))
  def xla(x, scale, shift):
    mean, var = x.mean(tuple(range(x.ndim - 1))), x.var(tuple(range(x.ndim - 1)))
    return (x - mean) * jax.lax.rsqrt(var + 1e-3) * scale + shift, mean, var
  ours = jax.grad(loss(lambda *a: onednn_norm.batch_norm(*a, 1e-3, threads)), (0, 1, 2))
  for mine, want in zip(ours(x, scale, shift), jax.grad(loss(xla), (0, 1, 2))(x, scale, shift)):
    np.testing.assert_allclose(mine, want, rtol=1e-4, atol=1e-4 * float(jnp.abs(want).max()))


def _apply(backend, variables, x, train=True):
  conv_backend.use_backend(backend)
  try:
    layer = layers.BatchNorm(use_running_average=not train)
    def loss(params):
      y, updates = layer.apply({**variables, 'params': params}, x, mutable=['batch_stats'])
      return (y * jnp.cos(y)).sum(), (y, updates['batch_stats'])
    (_, (y, stats)), grads = jax.value_and_grad(loss, has_aux=True)(variables['params'])
    program = str(jax.make_jaxpr(lambda v: layer.apply(v, x, mutable=['batch_stats']))(variables))
    return y, stats, grads, program
  finally:
    conv_backend.use_backend('auto')


@needs_onednn
def test_the_layer_trains_as_flax_computes_it():
  """Same outputs, running averages and parameter gradients as flax's own computation, through
  the same variables; and the oneDNN call is really made, in training only."""
  x = jax.random.normal(jax.random.PRNGKey(0), (8, 5, 5, 12)) * 2 + 1
  variables = layers.BatchNorm(use_running_average=False).init(jax.random.PRNGKey(1), x)
  assert jax.tree.map(jnp.shape, variables) == {'params': {'scale': (12,), 'bias': (12,)},
                                                'batch_stats': {'mean': (12,), 'var': (12,)}}
  variables['params']['scale'] = variables['params']['scale'] * 1.5
  y_xla, stats_xla, grads_xla, program_xla = _apply('xla', variables, x)
  y_ours, stats_ours, grads_ours, program_ours = _apply('onednn', variables, x)
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

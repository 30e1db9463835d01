"""GELU through oneDNN against its formula, against XLA's, and for stray writes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from convjax.nn import conv_backend, layers, onednn, onednn_gelu

needs_onednn = pytest.mark.skipif(not onednn.available(),
                                  reason=f'oneDNN extension unavailable: {onednn.why_unavailable()}')


def _formula(x, approximate):
  """x * Phi(x) and its derivative, in float64: Phi by erf, or by tanh with approximate."""
  x = np.asarray(x, np.float64)
  if approximate:
    inner = np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)
    cdf = 0.5 * (1 + np.tanh(inner))
    density = 0.5 * (1 - np.tanh(inner) ** 2) * np.sqrt(2 / np.pi) * (1 + 3 * 0.044715 * x ** 2)
  else:
    cdf = 0.5 * (1 + special.erf(x / np.sqrt(2)))
    density = np.exp(-x * x / 2) / np.sqrt(2 * np.pi)
  return x * cdf, cdf + x * density


@needs_onednn
@pytest.mark.parametrize('approximate', [False, True])
@pytest.mark.parametrize('shape,threads', [((1,), 1), ((1003,), 2), ((2, 5, 5, 17), 1),
                                           ((3, 4, 96), 2)])
def test_values_and_gradient_follow_the_formula(shape, threads, approximate):
  """Sizes off any vector width; inputs across both tails, where Phi saturates."""
  rng = np.random.default_rng(sum(shape))
  x = jnp.asarray(rng.uniform(-7, 7, shape), jnp.float32)
  dy = jnp.asarray(rng.normal(size=shape), jnp.float32)
  value, derivative = _formula(x, approximate)
  y, vjp = jax.vjp(lambda v: onednn_gelu.gelu(v, threads, approximate), x)
  np.testing.assert_allclose(y, value, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(vjp(dy)[0], dy * derivative, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not (onednn.available() and onednn_gelu.supports(jnp.zeros(1, jnp.bfloat16))),
                    reason="this processor's oneDNN has no bfloat16 GELU")
@pytest.mark.parametrize('approximate', [False, True])
def test_bfloat16_follows_the_formula_to_its_precision(approximate):
  x = jnp.linspace(-5, 5, 999, dtype=jnp.float32).astype(jnp.bfloat16)
  dy = jnp.cos(jnp.arange(999.0)).astype(jnp.bfloat16)
  value, derivative = _formula(x.astype(jnp.float32), approximate)
  y, vjp = jax.vjp(lambda v: onednn_gelu.gelu(v, 1, approximate), x)
  assert y.dtype == vjp(dy)[0].dtype == jnp.bfloat16
  np.testing.assert_allclose(y.astype(np.float32), value, rtol=1e-2, atol=1e-2)
  np.testing.assert_allclose(vjp(dy)[0].astype(np.float32),
                             dy.astype(np.float32) * derivative, rtol=2e-2, atol=2e-2)


@needs_onednn
@pytest.mark.parametrize('approximate', [False, True])
def test_layer_picks_onednn_and_matches_xla(approximate):
  """layers.gelu calls oneDNN under the 'onednn' backend and XLA's loops under 'xla', with the
  same values and gradients, jitted."""
  x = jnp.linspace(-4, 4, 2 * 3 * 3 * 40).reshape(2, 3, 3, 40)
  loss = lambda v: (layers.gelu(v, approximate) * jnp.cos(v)).sum()
  results = {}
  for backend in ('onednn', 'xla'):
    conv_backend.use_backend(backend)
    try:
      program = str(jax.make_jaxpr(jax.grad(loss))(x))
      assert ('convjax_gelu_backward' in program) == (backend == 'onednn')
      results[backend] = jax.jit(jax.value_and_grad(loss))(x)
    finally:
      conv_backend.use_backend('auto')
  for mine, theirs in zip(results['onednn'], results['xla']):
    np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_an_empty_array_passes_through():
  assert onednn_gelu.gelu(jnp.zeros((0, 8)), 1).shape == (0, 8)


@needs_onednn
@pytest.mark.parametrize('count', [1, 17, 4099])
@pytest.mark.parametrize('backward', [False, True])
@pytest.mark.parametrize('threads,approximate,dtype', [
    (1, False, jnp.float32), (2, True, jnp.float32), (2, False, jnp.bfloat16),
    (1, True, jnp.bfloat16)])
def test_onednn_writes_only_inside_its_buffers(count, backward, threads, approximate, dtype):
  if not onednn_gelu.supports(jnp.zeros(1, dtype)):
    pytest.skip(f"this processor's oneDNN has no {jnp.dtype(dtype).name} GELU")
  assert onednn_gelu.overrun_bytes(count, backward, threads, approximate, dtype) == 0

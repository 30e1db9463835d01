"""Dense layers' products through oneDNN against float64 products, against XLA's, and for stray
writes."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convjax.nn import conv_backend, layers, onednn, onednn_dense

needs_onednn = pytest.mark.skipif(not onednn.available(),
                                  reason=f'oneDNN extension unavailable: {onednn.why_unavailable()}')
has_bfloat16 = pytest.mark.skipif(
    not (onednn.available() and onednn_dense.supports(jnp.zeros((1, 1), jnp.bfloat16),
                                                      jnp.zeros((1, 1), jnp.bfloat16))),
    reason="this processor's oneDNN has no bfloat16 matmul")


def _operands(m, k, o, dtype=jnp.float32):
  rng = np.random.default_rng(m * 100 + k * 10 + o)
  return tuple(jnp.asarray(rng.normal(size=shape), dtype) for shape in ((m, k), (k, o), (m, o)))


@needs_onednn
@pytest.mark.parametrize('m,k,o,threads', [(1, 1, 1, 1), (3, 17, 5, 2), (16, 400, 120, 1),
                                           (37, 64, 1000, 2)])
def test_product_and_both_gradients_equal_float64(m, k, o, threads):
  """y = x w, dx = dy w^T, dw = x^T dy, with the transposed operands read in place."""
  x, w, dy = _operands(m, k, o)
  y, vjp = jax.vjp(lambda a, b: onednn_dense.dense(a, b, threads), x, w)
  dx, dw = vjp(dy)
  x64, w64, dy64 = (np.asarray(v, np.float64) for v in (x, w, dy))
  for mine, exact in ((y, x64 @ w64), (dx, dy64 @ w64.T), (dw, x64.T @ dy64)):
    assert mine.shape == exact.shape and mine.dtype == jnp.float32
    np.testing.assert_allclose(mine, exact, rtol=1e-5, atol=1e-4)


@needs_onednn
@pytest.mark.parametrize('trans_a,trans_b', [(False, False), (True, False), (False, True),
                                             (True, True)])
def test_matmul_reads_either_operand_transposed(trans_a, trans_b):
  a, b, _ = _operands(5, 7, 3)
  stored_a, stored_b = (a.T if trans_a else a), (b.T if trans_b else b)
  np.testing.assert_allclose(onednn_dense.matmul(stored_a, stored_b, 1, trans_a, trans_b),
                             np.asarray(a, np.float64) @ np.asarray(b, np.float64),
                             rtol=1e-5, atol=1e-5)


@has_bfloat16
def test_bfloat16_products_keep_the_dtype_and_accumulate_in_float32():
  """bfloat16 in and out; every sum of 512 bfloat16 products accumulates in float32, so the
  result is the exact product rounded once (a bfloat16 accumulator would drift far further)."""
  x, w, dy = _operands(8, 512, 24, jnp.bfloat16)
  y, vjp = jax.vjp(lambda a, b: onednn_dense.dense(a, b, 2), x, w)
  dx, dw = vjp(dy)
  x64, w64, dy64 = (np.asarray(v.astype(jnp.float32), np.float64) for v in (x, w, dy))
  for mine, exact in ((y, x64 @ w64), (dx, dy64 @ w64.T), (dw, x64.T @ dy64)):
    assert mine.dtype == jnp.bfloat16
    np.testing.assert_allclose(mine.astype(np.float32), exact, rtol=1e-2, atol=0.05)


@needs_onednn
def test_dense_layer_picks_onednn_and_matches_xla():
  """layers.dense (flax's Dense, the same parameters) calls oneDNN under the 'onednn' backend and
  XLA's dot under 'xla', with the same outputs and gradients on a [2, 3, 40] input, jitted."""
  layer = layers.dense(24)
  x = jnp.sin(jnp.arange(2 * 3 * 40.0)).reshape(2, 3, 40)
  params = layer.init(jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(
      jnp.shape, nn.Dense(24).init(jax.random.key(0), x))
  loss = lambda p, v: (layer.apply(p, v) ** 2).sum()
  results = {}
  for backend in ('onednn', 'xla'):
    conv_backend.use_backend(backend)
    try:
      program = str(jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(params, x))
      assert ('convjax_matmul' in program) == (backend == 'onednn')
      results[backend] = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(params, x)
    finally:
      conv_backend.use_backend('auto')
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
               results['onednn'], results['xla'])


@needs_onednn
def test_other_products_stay_with_xla():
  """Only a dense layer's product (last axis against a matrix's first) goes to oneDNN: batched,
  differently contracted or mixed-dtype products keep lax.dot_general."""
  conv_backend.use_backend('onednn')
  try:
    a, b = jnp.ones((2, 3, 4)), jnp.ones((2, 4, 5))
    cases = [(a, b, (((2,), (1,)), ((0,), (0,)))),                         # batched
             (jnp.ones((4, 3)), jnp.ones((4, 5)), (((0,), (0,)), ((), ()))),  # contracts axis 0
             (jnp.ones((3, 4)), jnp.ones((4, 5), jnp.bfloat16), (((1,), (0,)), ((), ())))]
    for lhs, rhs, numbers in cases:
      program = str(jax.make_jaxpr(
          lambda u, v, n=numbers: conv_backend.dot_general(u, v, n))(lhs, rhs))
      assert 'convjax_matmul' not in program
  finally:
    conv_backend.use_backend('auto')


@needs_onednn
def test_no_rows_gives_an_empty_product():
  assert onednn_dense.dense(jnp.zeros((0, 8)), jnp.ones((8, 3)), 1).shape == (0, 3)


@needs_onednn
@pytest.mark.parametrize('m,k,n', [(1, 1, 1), (16, 9, 1000), (3, 4099, 17)])
@pytest.mark.parametrize('trans_a,trans_b', [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize('threads,dtype', [(1, jnp.float32), (2, jnp.float32),
                                           (2, jnp.bfloat16)])
def test_onednn_writes_only_inside_its_buffers(m, k, n, trans_a, trans_b, threads, dtype):
  """The forward (neither transposed), backward-data (trans_b) and backward-weights (trans_a)
  products, each between guard bytes."""
  if not onednn_dense.supports(jnp.zeros((1, 1), dtype), jnp.zeros((1, 1), dtype)):
    pytest.skip(f"this processor's oneDNN has no {jnp.dtype(dtype).name} matmul")
  assert onednn_dense.overrun_bytes(m, k, n, trans_a, trans_b, threads, dtype) == 0

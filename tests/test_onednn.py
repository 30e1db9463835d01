"""convjax's oneDNN convolutions against lax.conv_general_dilated: values and both gradients.

These need the extension (python -m convjax.nn.native.build, run by .ci/setup). Without it they
skip and say why, except where CONVJAX_REQUIRE_ONEDNN=1 (set by .ci/run), where a missing
extension is a failure: CI must build it.
"""
import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from convjax.nn import conv_backend, onednn
from tests import test_models

needs_onednn = pytest.mark.skipif(not onednn.available(),
                                  reason=f'oneDNN extension unavailable: {onednn.why_unavailable()}')


def test_ci_builds_the_extension():
  if os.environ.get('CONVJAX_REQUIRE_ONEDNN') != '1':
    pytest.skip('only where CONVJAX_REQUIRE_ONEDNN=1 (.ci/run)')
  assert onednn.available(), onednn.why_unavailable()
  assert onednn.version().count('.') == 2


def _xla(x, kernel, strides, padding, dilation, groups):
  return lax.conv_general_dilated(x, kernel, strides, padding, rhs_dilation=dilation,
                                  dimension_numbers=conv_backend.NHWC, feature_group_count=groups,
                                  precision=lax.Precision.HIGHEST)


def _pads(padding, x_shape, kernel_shape, strides, dilation):
  if isinstance(padding, str):
    extent = [d * (k - 1) + 1 for k, d in zip(kernel_shape[:2], dilation)]
    return tuple(tuple(p) for p in lax.padtype_to_pads(x_shape[1:3], extent, strides, padding))
  return padding


# (batch, height, width, in channels, out channels, kernel, strides, padding, dilation, groups):
# every kernel size, stride, padding kind, dilation, grouping, odd batches and channel counts.
CASES = [
    (2, 8, 8, 1, 6, 1, 1, 'VALID', 1, 1),
    (3, 9, 7, 3, 16, 3, 1, 'SAME', 1, 1),
    (1, 12, 10, 16, 16, 5, 2, 'SAME', 1, 1),
    (5, 14, 14, 3, 8, 7, 2, ((3, 2), (1, 3)), 1, 1),
    (2, 23, 19, 3, 4, 11, 4, ((2, 2), (2, 2)), 1, 1),
    (3, 10, 11, 16, 64, 3, 1, ((1, 1), (1, 1)), 2, 1),
    (2, 9, 9, 64, 16, 3, 2, 'VALID', 1, 1),
    (1, 8, 6, 4, 6, 3, 1, 'SAME', 1, 2),
    (3, 7, 9, 16, 16, 3, 2, ((1, 0), (0, 1)), 1, 16),
    (2, 11, 8, 8, 16, 5, 1, 'SAME', 2, 8),
    (2, 9, 9, 48, 48, 7, 1, ((3, 3), (3, 3)), 1, 48),  # ConvNeXt's depthwise 7x7.
    (2, 8, 8, 64, 64, 3, 2, ((1, 1), (1, 1)), 1, 32),  # ResNeXt's 32 groups, strided.
    (4, 6, 6, 64, 64, 1, 2, 'VALID', 1, 1),
    (3, 9, 8, 4, 6, 1, 2, 'VALID', 1, 1),  # Subsampled before oneDNN (onednn._POINTWISE_BLOCK).
]


@needs_onednn
@pytest.mark.parametrize('n,h,w,c,o,k,s,padding,d,g', CASES)
def test_values_and_gradients_match_xla(n, h, w, c, o, k, s, padding, d, g):
  rng = np.random.default_rng(n * h + w + k)
  x = jnp.asarray(rng.normal(size=(n, h, w, c)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(k, k, c // g, o)) / np.sqrt(k * k * c / g), jnp.float32)
  strides, dilation = (s, s), (d, d)
  pads = _pads(padding, x.shape, kernel.shape, strides, dilation)
  want, want_vjp = jax.vjp(lambda x, k: _xla(x, k, strides, pads, dilation, g), x, kernel)
  got, got_vjp = jax.vjp(lambda x, k: onednn.conv2d(x, k, strides, pads, dilation, g), x, kernel)
  assert got.shape == want.shape and got.dtype == want.dtype
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  dy = jnp.asarray(rng.normal(size=want.shape), jnp.float32)
  for mine, theirs in zip(got_vjp(dy), want_vjp(dy)):
    np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=2e-5 * np.abs(theirs).max())



def _visit(jaxpr, visit):
  """Calls visit(eqn) on every equation of a jaxpr and of its sub-jaxprs."""
  for eqn in jaxpr.eqns:
    visit(eqn)
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        sub = getattr(sub, 'jaxpr', sub)
        if hasattr(sub, 'eqns'):
          _visit(sub, visit)


def _geometries(jaxpr, found):
  """Adds (x shape, kernel shape, strides, padding, dilation, groups) of every 2-D NHWC / HWIO
  convolution in a jaxpr to the set `found`."""
  def visit(eqn):
    if eqn.primitive.name == 'conv_general_dilated':
      x, kernel = (v.aval.shape for v in eqn.invars)
      p = eqn.params
      nhwc = lax.conv_dimension_numbers(x, kernel, conv_backend.NHWC)
      if (len(x) == 4 and p['dimension_numbers'] == nhwc and p['batch_group_count'] == 1
          and tuple(p['lhs_dilation']) == (1, 1)):
        found.add((x, kernel, tuple(p['window_strides']), tuple(map(tuple, p['padding'])),
                   tuple(p['rhs_dilation']), p['feature_group_count']))
  _visit(jaxpr, visit)
  return found


def _norms(jaxpr, found):
  """Adds (rows, channels, relu) of every oneDNN batch norm call in a jaxpr to the set `found`."""
  def visit(eqn):
    if eqn.params.get('target_name') == 'convjax_batch_norm_forward':
      shape = eqn.invars[0].aval.shape
      relu = bool(dict(eqn.params['attributes'])['relu'])
      found.add((int(np.prod(shape[:-1])), shape[-1], relu))
  _visit(jaxpr, visit)
  return found


# Runs in a fresh process, whose oneDNN may be held to an instruction set (ONEDNN_MAX_CPU_ISA):
# the geometries from stdin, each as the three calls on 1 and 2 threads; prints those that stray.
# Batch norms ({'norms': [[rows, channels, relu], ...]}) go forward and backward.
_CHECK_OVERRUNS = """
import json, sys
from convjax.nn import onednn, onednn_norm
calls = json.load(sys.stdin)
strays = [[kind, threads, geometry] for geometry in calls.get('convolutions', ())
          for threads in (1, 2) for kind in ('forward', 'backward_data', 'backward_weights')
          if onednn.overrun_bytes(kind, *geometry, threads=threads) != 0]
strays += [['batch_norm', threads, norm] for norm in calls.get('norms', ()) for threads in (1, 2)
           for backward in (False, True)
           if onednn_norm.overrun_bytes(*norm[:2], backward, threads=threads, relu=norm[2]) != 0]
print(json.dumps(strays))
"""


@needs_onednn
def test_an_overrun_is_seen():
  """The guard check below can fail: an output 64 bytes short has its last writes counted, and
  oneDNN#6035 is seen where it lives, AVX2's 1x1 backward-weights kernel of a strided
  convolution with 4 input channels on one thread (conv2d never makes that call)."""
  for kind in ('forward', 'backward_data', 'backward_weights'):
    args = (kind, (2, 8, 8, 16), (3, 3, 4, 16), (1, 1), ((1, 1), (1, 1)), (1, 1), 4)
    assert onednn.overrun_bytes(*args) == 0
    assert onednn.overrun_bytes(*args, shortfall=64) >= 60  # A float may repeat a guard byte.
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  bug = [[(16, 8, 8, 4), (1, 1, 4, 6), (2, 2), ((0, 0), (0, 0)), (1, 1), 1]]
  result = subprocess.run([sys.executable, '-c', _CHECK_OVERRUNS],
                          input=json.dumps({'convolutions': bug}),
                          env=dict(os.environ, PYTHONPATH=root, ONEDNN_MAX_CPU_ISA='AVX2'),
                          cwd=root, capture_output=True, text=True, timeout=300, check=True)
  assert json.loads(result.stdout) == json.loads(json.dumps([['backward_weights', 1, bug[0]]]))


def _as_called(x, kernel, strides, padding, dilation, groups):
  """A convolution's geometry as conv2d hands it to oneDNN (onednn.subsamples_first)."""
  if onednn.subsamples_first(kernel, strides, padding):
    n, h, w, c = x
    x, strides = (n, -(-h // strides[0]), -(-w // strides[1]), c), (1, 1)
  return x, kernel, strides, padding, dilation, groups


@needs_onednn
@pytest.mark.slow
def test_onednn_stays_inside_its_buffers_for_every_convolution_of_the_zoo(monkeypatch):
  """Every forward convolution of every tiny family model (grouped and depthwise included) at the
  tests' batch sizes, as conv2d hands it to oneDNN, in all three directions, and every batch norm
  both ways, on 1 and 2 threads: no byte written outside the buffers, temporaries and
  scratchpad. oneDNN 3.2 has kernels that do (see _POINTWISE_BLOCK), and a stray write inside XLA corrupts its heap and crashes some
  later, unrelated test. Checked with this processor's kernels and with AVX2's (an AMD EPYC's,
  where oneDNN 3.2 finds no AVX-512): only AVX2's 1x1 kernels show oneDNN#6035."""
  monkeypatch.setattr(conv_backend, 'ROWS_MAX_CHANNELS', 0)  # Every convolution a lax one.
  convolutions, norms = set(), set()
  try:
    for name, batch in [(name, batch) for name in FAMILIES for batch in (2, 3)]:
      shape = test_models.tiny_input_shape(name)
      model = test_models.tiny_model(name, shape)
      images = jax.ShapeDtypeStruct((batch,) + shape, jnp.float32)
      variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), images)
      # A fresh function per trace: JAX reuses a function's trace, whatever the backend.
      train = lambda: lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats'],
                                               rngs={'dropout': jax.random.PRNGKey(0)})
      conv_backend.use_backend('xla')  # Convolutions as lax sees them, grouped ones included.
      _geometries(jax.make_jaxpr(train())(variables, images).jaxpr, convolutions)
      conv_backend.use_backend('onednn')  # Batch norms as the oneDNN calls they become.
      _norms(jax.make_jaxpr(train())(variables, images).jaxpr, norms)
  finally:
    conv_backend.use_backend('auto')
  assert any(g[-1] > 1 for g in convolutions) and len(convolutions) > 50 and len(norms) > 20
  geometries = json.dumps({'convolutions': sorted(_as_called(*g) for g in convolutions),
                           'norms': sorted(norms)})
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  for isa in ('', 'AVX2'):
    env = dict(os.environ, PYTHONPATH=root, ONEDNN_MAX_CPU_ISA=isa or 'ALL')
    result = subprocess.run([sys.executable, '-c', _CHECK_OVERRUNS], input=geometries, env=env,
                            cwd=root, capture_output=True, text=True, timeout=600, check=True)
    assert json.loads(result.stdout) == [], (isa or 'native', result.stdout[:2000])


# A ResNet-18 shortcut at test width: 1x1, stride 2, 4 -> 6 channels, on one thread per call.
_POINTWISE_CRASH = """
import jax, jax.numpy as jnp
from convjax.nn import onednn
x, kernel = jnp.ones((16, 8, 8, 4)), jnp.ones((1, 1, 4, 6))
step = jax.jit(jax.grad(lambda k: onednn.conv2d(x, k, (2, 2), ((0, 0), (0, 0)), threads=1).sum()))
for _ in range(20):
  dk = step(kernel).block_until_ready()
assert float(dk[0, 0, 0, 0]) == 16 * 4 * 4
"""


@needs_onednn
@pytest.mark.slow
def test_a_strided_pointwise_weight_gradient_leaves_the_heap_intact():
  """oneDNN 3.2 writes past its workspace here (uxlfoundation/oneDNN#6035) unless conv2d
  subsamples first; glibc's MALLOC_CHECK_=3 turns that corruption into an abort."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, MALLOC_CHECK_='3', PYTHONPATH=root)
  env.pop('XLA_FLAGS', None)
  result = subprocess.run([sys.executable, '-c', _POINTWISE_CRASH], env=env, cwd=root,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]


@needs_onednn
def test_lowering_routes_layers_through_onednn_and_back():
  """use_backend decides; a traced program shows the custom calls, or none."""
  x = jnp.ones((2, 8, 8, 3))
  kernel = jnp.ones((3, 3, 3, 4))

  def loss(x, kernel):
    return jnp.sum(conv_backend.conv_general_dilated(x, kernel, (1, 1), 'SAME',
                                                     dimension_numbers=conv_backend.NHWC) ** 2)

  try:
    assert conv_backend.use_backend('onednn') == 'onednn'
    text = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(x, kernel).as_text()
    for target in ('convjax_conv_forward', 'convjax_conv_backward_data',
                   'convjax_conv_backward_weights'):
      assert target in text
    assert conv_backend.use_backend('xla') == 'xla'
    text = jax.jit(jax.grad(lambda x, k: loss(x, k) * 1.0, argnums=(0, 1))).lower(
        x, kernel).as_text()
    assert 'convjax_conv' not in text
  finally:
    conv_backend.use_backend('auto')


@needs_onednn
def test_bfloat16_matches_xla_to_bfloat16_precision():
  if not onednn.convolves_bfloat16():
    pytest.skip("this processor's oneDNN has no bfloat16 convolutions (XLA takes them)")
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 10, 10, 16)), jnp.bfloat16)
  kernel = jnp.asarray(rng.normal(size=(3, 3, 16, 32)) / 12, jnp.bfloat16)
  pads = ((1, 1), (1, 1))
  got = onednn.conv2d(x, kernel, (1, 1), pads)
  want = _xla(x.astype(jnp.float32), kernel.astype(jnp.float32), (1, 1), pads, (1, 1), 1)
  assert got.dtype == jnp.bfloat16
  np.testing.assert_allclose(got.astype(jnp.float32), want, rtol=2e-2, atol=2e-2)


@needs_onednn
def test_bfloat16_goes_to_xla_where_onednn_has_no_bfloat16_kernels(monkeypatch):
  monkeypatch.setattr(onednn, 'convolves_bfloat16', lambda: False)
  assert onednn.supports((2, 8, 8, 16), (3, 3, 16, 16), jnp.float32)
  assert not onednn.supports((2, 8, 8, 16), (3, 3, 16, 16), jnp.bfloat16)
  conv = lambda x, k: conv_backend.conv_general_dilated(x, k, (1, 1), 'SAME',
                                                        dimension_numbers=conv_backend.NHWC)
  try:
    conv_backend.use_backend('onednn')
    for dtype, custom_calls in ((jnp.float32, True), (jnp.bfloat16, False)):
      x, kernel = jnp.ones((2, 8, 8, 16), dtype), jnp.ones((3, 3, 16, 16), dtype)
      text = jax.jit(conv).lower(x, kernel).as_text()
      assert ('convjax_conv_forward' in text) == custom_calls, dtype
      # What a run reports is what ran.
      assert conv_backend.backend_name(dtype) == ('onednn' if custom_calls else 'xla'), dtype
    assert conv_backend.backend_note(jnp.float32) == ''
    assert conv_backend.backend_note(jnp.bfloat16).startswith(
        "this processor's oneDNN has no bfloat16 convolutions, so XLA computes them")
    monkeypatch.setattr(onednn, 'convolves_bfloat16', lambda: True)
    assert conv_backend.backend_name(jnp.bfloat16) == 'onednn'
    assert conv_backend.backend_note(jnp.bfloat16) == ''
    conv_backend.use_backend('xla')  # Asked for XLA: nothing left oneDNN, so nothing to explain.
    assert conv_backend.backend_note(jnp.bfloat16) == ''
  finally:
    conv_backend.use_backend('auto')


@needs_onednn
def test_vmap_and_jit_with_donation():
  rng = np.random.default_rng(1)
  xs = jnp.asarray(rng.normal(size=(3, 2, 6, 6, 4)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(3, 3, 4, 5)), jnp.float32)
  pads = ((1, 1), (1, 1))
  want = jnp.stack([_xla(x, kernel, (1, 1), pads, (1, 1), 1) for x in xs])
  got = jax.vmap(lambda x: onednn.conv2d(x, kernel, (1, 1), pads))(xs)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  step = jax.jit(lambda x, k: x - 0.1 * jax.grad(
      lambda x: jnp.sum(onednn.conv2d(x, k, (1, 1), pads) ** 2))(x), donate_argnums=0)
  expected = xs[0] - 0.1 * jax.grad(lambda x: jnp.sum(_xla(x, kernel, (1, 1), pads, (1, 1), 1)
                                                        ** 2))(xs[0])
  np.testing.assert_allclose(step(jnp.array(xs[0]), kernel), expected, rtol=1e-4, atol=1e-4)


def test_unknown_or_impossible_backend_is_one_sentence(monkeypatch):
  with pytest.raises(conv_backend.BackendError, match="conv_backend must be one of auto, xla, onednn"):
    conv_backend.use_backend('mkl')
  monkeypatch.setattr(onednn, 'LIBRARY', '/nonexistent/_onednn.so')
  onednn._load.cache_clear()  # pylint: disable=protected-access
  try:
    with pytest.raises(conv_backend.BackendError, match='needs convjax.s oneDNN extension, and '
                                                    '/nonexistent/_onednn.so is not built'):
      conv_backend.use_backend('onednn')
    assert conv_backend.backend_name() == 'xla'  # 'auto' falls back.
  finally:
    monkeypatch.undo()
    onednn._load.cache_clear()  # pylint: disable=protected-access


def _loss_and_grads(model, variables, images, labels):
  """A train step's loss and parameter gradients (batch-norm statistics from the batch)."""
  def loss(params):
    logits, _ = model.apply({**variables, 'params': params}, images, train=True,
                            rngs={'dropout': jax.random.PRNGKey(1)}, mutable=['batch_stats'])
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))
  return jax.jit(jax.value_and_grad(loss))(variables['params'])


FAMILIES = test_models.FAMILIES


def test_families_cover_every_registry_model():
  # vgg16_bn -> vgg, resnet152 -> resnet, wrn28_10 -> wrn; and the constructions of other names:
  # every inverted-residual net is MobileNetV3-small's blocks, RegNetX is RegNetY without SE.
  same = {'wide_resnet': 'resnet', 'preact_resnet': 'wrn', 'densenet_bc': 'densenet',
          'mobilenet_v': 'mobilenet_v3_small', 'mobilenet_v3_large': 'mobilenet_v3_small',
          'efficientnet_b': 'mobilenet_v3_small', 'regnet_x_400mf': 'regnet_y_400mf'}
  depth = lambda name: same.get(*[re.sub(r'\d*(_\d+)?(_bn)?$', '', name)] * 2)
  assert set(FAMILIES) <= set(test_models.EXPECTED_PARAMS)
  assert {depth(n) for n in test_models.EXPECTED_PARAMS} == {depth(n) for n in FAMILIES}


@needs_onednn
@pytest.mark.parametrize('name', test_models.edit_loop(FAMILIES))
def test_every_model_trains_the_same_with_onednn_and_xla(name):
  shape = test_models.tiny_input_shape(name)
  model = test_models.tiny_model(name, shape)
  images = jax.random.normal(jax.random.PRNGKey(0), (3,) + shape)
  labels = jnp.arange(3) % 5
  variables = model.init(jax.random.PRNGKey(2), images)
  results = {}
  try:
    for backend in ('xla', 'onednn'):
      conv_backend.use_backend(backend)
      results[backend] = _loss_and_grads(model, variables, images, labels)
  finally:
    conv_backend.use_backend('auto')
  (xla_loss, xla_grads), (ours_loss, our_grads) = results['xla'], results['onednn']
  np.testing.assert_allclose(ours_loss, xla_loss, rtol=1e-5)
  # Rounding differs between the libraries, so compare against the largest gradient anywhere:
  # some leaves are zero in exact arithmetic and hold only rounding noise (about 1e-8).
  scale = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(xla_grads))
  for path, theirs in jax.tree_util.tree_leaves_with_path(xla_grads):
    mine = _at(our_grads, path)
    np.testing.assert_allclose(mine, theirs, rtol=1e-3, atol=1e-5 * scale,
                               err_msg=jax.tree_util.keystr(path))


def _at(tree, path):
  for key in path:
    tree = tree[key.key]
  return tree


def test_a_failed_build_warns_in_one_line_and_keeps_the_last_good_library(monkeypatch, capsys):
  from convjax.nn.native import build
  before = os.path.getmtime(build.OUTPUT) if os.path.exists(build.OUTPUT) else None
  monkeypatch.setattr(build, 'COMPILER', '/nonexistent/g++')
  assert not build.build(force=True)
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith('warning: oneDNN extension not built (')
  assert err[0].endswith("convjax will use XLA's convolutions")
  assert (os.path.getmtime(build.OUTPUT) if os.path.exists(build.OUTPUT) else None) == before

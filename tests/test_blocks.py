"""The shared blocks of the families after ResNet (convjax/models/blocks.py) and RegNet's width
rule: numbers by hand, equivalences, and what each block keeps or changes."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from convjax.models import blocks, convnext, regnet
from convjax.nn import layers

NORM = functools.partial(layers.batch_norm, False)


@pytest.mark.parametrize('value, divisor, want', [
    (32, 8, 32), (36, 8, 40), (33.6, 8, 32), (4, 8, 8), (18, 16, 32), (90, 8, 88)])
def test_make_divisible_rounds_to_the_nearest_multiple_never_10_percent_down(value, divisor, want):
  assert blocks.make_divisible(value, divisor) == want


def test_regnet_stage_plans_are_torchvisions():
  """RegNet's quantised linear rule gives torchvision's (blocks, width, group width) stages."""
  assert regnet.stage_plan(22, 24, 24.48, 2.54, 16) == [
      (1, 32, 16), (2, 64, 16), (7, 160, 16), (12, 400, 16)]  # RegNetX-400MF.
  assert regnet.stage_plan(16, 48, 27.89, 2.09, 8) == [
      (1, 48, 8), (3, 104, 8), (6, 208, 8), (6, 440, 8)]  # RegNetY-400MF.


def test_a_depthwise_convolution_filters_each_channel_alone():
  """groups = channels: output channel c is channel c's own 2-D cross-correlation."""
  x = jax.random.normal(jax.random.key(0), (2, 7, 7, 3))
  layer = layers.conv2d(3, 3, groups=3, padding='HALF', use_bias=False)
  variables = layer.init(jax.random.key(1), x)
  kernel = variables['params']['kernel']  # [3, 3, 1, 3]: one 3x3 filter per channel.
  assert kernel.shape == (3, 3, 1, 3)
  y = layer.apply(variables, x)
  for c in range(3):
    alone = lax.conv_general_dilated(x[..., c:c + 1], kernel[..., c:c + 1], (1, 1),
                                     ((1, 1), (1, 1)), dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    np.testing.assert_allclose(y[..., c:c + 1], alone, rtol=1e-5, atol=1e-5)


def test_squeeze_excite_rescales_each_channel_by_a_gate_of_the_channel_means():
  x = jax.random.normal(jax.random.key(0), (2, 5, 5, 8))
  module = blocks.SqueezeExcite(squeeze=2)
  variables = module.init(jax.random.key(1), x)
  y = module.apply(variables, x)
  p = variables['params']
  means = x.mean(axis=(1, 2))
  hidden = jax.nn.relu(means @ p['reduce']['kernel'][0, 0] + p['reduce']['bias'])
  gate = jax.nn.sigmoid(hidden @ p['expand']['kernel'][0, 0] + p['expand']['bias'])
  np.testing.assert_allclose(y, x * gate[:, None, None, :], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('width_in, features, expanded, strides, parts, shortcut', [
    (16, 16, 16, 1, ['depthwise', 'project'], True),  # MobileNetV2's t = 1: no expansion.
    (16, 16, 96, 1, ['expand', 'depthwise', 'project'], True),
    (16, 24, 96, 1, ['expand', 'depthwise', 'project'], False),  # Width changes.
    (16, 16, 96, 2, ['expand', 'depthwise', 'project'], False),  # Resolution changes.
])
def test_the_inverted_residual_expands_only_when_asked_and_adds_x_only_when_shapes_match(
    width_in, features, expanded, strides, parts, shortcut):
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, width_in))
  module = blocks.InvertedResidual(features, expanded, NORM, strides=strides)
  variables = module.init(jax.random.key(1), x)
  assert list(variables['params']) == parts
  y = module.apply(variables, x)
  assert y.shape == (2, 8 // strides, 8 // strides, features)
  # With the projection's batch-norm scale at zero the branch is zero: x remains, or nothing.
  zeroed = jax.tree_util.tree_map_with_path(
      lambda path, v: jnp.zeros_like(v) if 'project' in str(path) and 'scale' in str(path) else v,
      variables)
  np.testing.assert_allclose(module.apply(zeroed, x), x if shortcut else jnp.zeros_like(y),
                             atol=1e-6)


def test_channel_layer_norm_normalises_each_position_over_its_channels():
  x = jax.random.normal(jax.random.key(0), (2, 4, 4, 6)) * 3 + 1
  module = blocks.channel_layer_norm()
  y = module.apply(module.init(jax.random.key(1), x), x)
  np.testing.assert_allclose(y.mean(-1), 0, atol=1e-5)
  np.testing.assert_allclose(y.var(-1), 1, rtol=1e-3)


def test_the_exact_gelu_is_erfs():
  x = jnp.linspace(-3, 3, 7)
  # oneDNN's erf, where it computes the GELU, is good to 1e-6 absolute (5e-7 at x = -3).
  np.testing.assert_allclose(layers.gelu(x, approximate=False),
                             x * 0.5 * (1 + jax.scipy.special.erf(x / np.sqrt(2))), rtol=1e-6,
                             atol=1e-6)

"""The architecture zoo: exact sizes, FLOPs, shapes, features, purity, and one learning step each."""
import functools

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from convjax import models, parallel
from convjax.analysis import summary
from convjax.models import input_shapes
from convjax.nn import layers
from convjax.training import steps
from convjax.models import lenet, video


def num_params(model, input_shape):
  return summary.count_params(model, input_shape)


def conv(k, c_in, c_out, bias=True, groups=1):
  """Parameters of a k x k convolution, computed by hand."""
  return k * k * c_in // groups * c_out + (c_out if bias else 0)


def dense(n_in, n_out):
  return n_in * n_out + n_out


# ------------------------------------------------------------------------------------------------
# Exact parameter counts at the native input (224x224x3 and 1000 classes for ImageNet models).

# torchvision's published counts (../shared/REFERENCE.md).
TORCHVISION = {
    'alexnet': 61_100_840,
    'vgg11': 132_863_336, 'vgg11_bn': 132_868_840, 'vgg13': 133_047_848, 'vgg13_bn': 133_053_736,
    'vgg16': 138_357_544, 'vgg16_bn': 138_365_992, 'vgg19': 143_667_240, 'vgg19_bn': 143_678_248,
    'resnet18': 11_689_512, 'resnet34': 21_797_672, 'resnet50': 25_557_032,
    'resnet101': 44_549_160, 'resnet152': 60_192_808, 'densenet121': 7_978_856,
    'resnext50_32x4d': 25_028_904, 'wide_resnet50_2': 68_883_240,
    'googlenet_torchvision': 6_624_904,
    'mobilenet_v2': 3_504_872, 'mobilenet_v3_small': 2_542_856, 'mobilenet_v3_large': 5_483_032,
    'efficientnet_b0': 5_288_548, 'regnet_y_400mf': 4_344_144, 'regnet_x_400mf': 5_495_976,
    'convnext_tiny': 28_589_128,
}


def alexnet_2012_count():
  convs = (conv(11, 3, 96) + conv(5, 96, 256, groups=2) + conv(3, 256, 384) +
           conv(3, 384, 384, groups=2) + conv(3, 384, 256, groups=2))
  return convs + dense(6 * 6 * 256, 4096) + dense(4096, 4096) + dense(4096, 1000)


def zfnet_count():
  convs = (conv(7, 3, 96) + conv(5, 96, 256) + conv(3, 256, 384) + conv(3, 384, 384) +
           conv(3, 384, 256))
  return convs + dense(6 * 6 * 256, 4096) + dense(4096, 4096) + dense(4096, 1000)


def googlenet_count(batch_norm=False, aux=False):
  """Table 1 of the paper, column by column; batch norm adds 2 per channel and drops conv biases."""
  def unit(k, c_in, c_out):
    return conv(k, c_in, c_out, bias=not batch_norm) + (2 * c_out if batch_norm else 0)
  total, channels = unit(7, 3, 64) + unit(1, 64, 64) + unit(3, 64, 192), 192
  from convjax.models.googlenet import INCEPTION_3, INCEPTION_4, INCEPTION_5
  for n1, r3, n3, r5, n5, proj in INCEPTION_3 + INCEPTION_4 + INCEPTION_5:
    total += (unit(1, channels, n1) + unit(1, channels, r3) + unit(3, r3, n3) +
              unit(1, channels, r5) + unit(5, r5, n5) + unit(1, channels, proj))
    channels = n1 + n3 + n5 + proj
  aux_head = lambda c_in: unit(1, c_in, 128) + dense(4 * 4 * 128, 1024) + dense(1024, 1000)
  return total + dense(1024, 1000) + (aux_head(512) + aux_head(528) if aux else 0)


def cifar_resnet_count(depth):
  """6n+2 layers, option-A shortcuts: only the convs, batch norms and the classifier hold weights."""
  n, total, c_in = (depth - 2) // 6, conv(3, 3, 16, bias=False) + 2 * 16, 16
  for width in (16, 32, 64):
    for _ in range(n):
      total += conv(3, c_in, width, bias=False) + conv(3, width, width, bias=False) + 4 * width
      c_in = width
  return total + dense(64, 10)


def speednet_count():
  """A 3x3 stem of 24 maps, then (32, 64, 128)-wide blocks of two bias-free 3x3 convs; batch norm
  without scale (a shift per map); the classifier."""
  total, c_in = conv(3, 1, 24, bias=False) + 24, 24
  for width in (32, 64, 128):
    total += conv(3, c_in, width, bias=False) + conv(3, width, width, bias=False) + 2 * width
    c_in = width
  return total + dense(128, 10)


def nin_count():
  return (conv(5, 3, 192) + conv(1, 192, 160) + conv(1, 160, 96) +
          conv(5, 96, 192) + 2 * conv(1, 192, 192) +
          conv(3, 192, 192) + conv(1, 192, 192) + conv(1, 192, 10))


def raw_waveform_count(stem, stages, classes=10):
  """Dai et al. 2017's nets: bias-free 1-D convs (a k-sample kernel holds k * c_in * c_out
  weights), each with batch norm's scale and shift per channel; the classifier on the last width."""
  features, kernel, _ = stem
  total, c_in = kernel * 1 * features + 2 * features, features
  for width, depth in stages:
    for _ in range(depth):
      total += 3 * c_in * width + 2 * width
      c_in = width
  return total + dense(c_in, classes)


def logmel_cnn_count(widths=(32, 64, 128, 128)):
  """Batch norm on the one-channel spectrogram, then bias-free 3x3 convs with batch norm."""
  total, c_in = 2, 1
  for width in widths:
    total += conv(3, c_in, width, bias=False) + 2 * width
    c_in = width
  return total + dense(c_in, 10)


def spacetime_count(widths, temporal_kernel=3, classes=5):
  """C3D-style nets: bias-free t x 3 x 3 convs, each with batch norm; the classifier."""
  total, c_in = 0, 1
  for width in widths:
    total += temporal_kernel * 9 * c_in * width + 2 * width
    c_in = width
  return total + dense(c_in, classes)


def r2plus1d_count(widths, classes=5):
  """R(2+1)D: each (2+1)D conv is a bias-free 1x3x3 conv to M channels, batch norm, and a 3x1x1
  conv, with M = floor(3 * 9 * c_in * c_out / (9 * c_in + 3 * c_out)) (Tran et al. 2018, eq. 1)."""
  def pair(c_in, c_out):
    middle = 27 * c_in * c_out // (9 * c_in + 3 * c_out)
    return 9 * c_in * middle + 2 * middle + 3 * middle * c_out
  total, c_in = pair(1, widths[0]) + 2 * widths[0], widths[0]
  for stage, width in enumerate(widths):
    if stage or c_in != width:  # The projection shortcut: a 1x1x1 conv and batch norm.
      total += c_in * width + 2 * width
    total += pair(c_in, width) + 2 * width + pair(width, width) + 2 * width
    c_in = width
  return total + dense(c_in, classes)


def char_cnn_count(features=128, hidden=512, length=256, classes=12):
  """Zhang et al. 2015's small net: a 7-wide conv over 256 one-hot byte codes, then 7, 3, 3, 3, 3
  'VALID' convs of `features`, max pools of 3 after the 1st, 2nd and 6th; two hidden layers."""
  total = 7 * 256 * features + features + 7 * features ** 2 + features
  total += 4 * (3 * features ** 2 + features)
  for kernel, pool in ((7, 3), (7, 3), (3, 1), (3, 1), (3, 1), (3, 3)):
    length = (length - kernel + 1) // pool
  return total + dense(length * features, hidden) + dense(hidden, hidden) + dense(hidden, classes)


def kim_cnn_count(embedding=32, widths=(3, 4, 5), filters=100, classes=12):
  return (256 * embedding + sum(w * embedding * filters + filters for w in widths)
          + dense(len(widths) * filters, classes))


def preact_count(stage_sizes, widths, stem_width, channels=3, classes=10):
  """Pre-activation nets counted block by block: bn (2 per channel) before each 3x3 conv, a 1x1
  shortcut where the shape changes, and the closing bn before the classifier."""
  total, c = conv(3, channels, stem_width, bias=False), stem_width
  for stage, (n, w) in enumerate(zip(stage_sizes, widths)):
    for index in range(n):
      changes = (stage > 0 and index == 0) or c != w
      total += 2 * c + conv(3, c, w, bias=False) + 2 * w + conv(3, w, w, bias=False)
      total += conv(1, c, w, bias=False) if changes else 0
      c = w
  return total + 2 * c + dense(c, classes)


def densenet_bc_count(depth=100, k=12, classes=10):
  """DenseNet-BC for CIFAR by hand: a 3x3 stem of 2k maps, 3 blocks of (depth - 4) / 6 layers
  (bn, 1x1 to 4k, bn, 3x3 to k), transitions halving the maps (bn, 1x1), a closing bn."""
  total, m = conv(3, 3, 2 * k, bias=False), 2 * k
  for block in range(3):
    for _ in range((depth - 4) // 6):
      total += 2 * m + conv(1, m, 4 * k, bias=False) + 2 * 4 * k + conv(3, 4 * k, k, bias=False)
      m += k
    if block < 2:
      total += 2 * m + conv(1, m, m // 2, bias=False)
      m //= 2
  return total + 2 * m + dense(m, classes)


def wrn_count(depth, k):
  n = (depth - 4) // 6
  return preact_count((n,) * 3, (16 * k, 32 * k, 64 * k), 16)


EXPECTED_PARAMS = {
    **TORCHVISION,
    'lenet5': 61_706, 'lenet5_elu': 61_706, 'lenet5_1998': 60_000,
    'alexnet_2012': alexnet_2012_count(), 'zfnet': zfnet_count(),
    'googlenet': googlenet_count(), 'googlenet_bn': googlenet_count(batch_norm=True),
    **{f'resnet{d}': cifar_resnet_count(d) for d in (20, 32, 44, 56, 110)},
    'nin': nin_count(),
    'wrn16_8': wrn_count(16, 8), 'wrn28_10': wrn_count(28, 10), 'wrn40_4': wrn_count(40, 4),
    'preact_resnet18': preact_count((2, 2, 2, 2), (64, 128, 256, 512), 64),
    'densenet_bc100': densenet_bc_count(),  # Huang et al. 2017's Table 2: 0.8M.
    'speednet': speednet_count(),
    'm3': raw_waveform_count((256, 80, 4), [(256, 1)]),
    'm5': raw_waveform_count((128, 80, 4), [(128, 1), (256, 1), (512, 1)]),
    'm11': raw_waveform_count((64, 80, 4), [(64, 2), (128, 2), (256, 3), (512, 2)]),
    'm18': raw_waveform_count((64, 80, 4), [(64, 4), (128, 4), (256, 4), (512, 4)]),
    'logmel_cnn': logmel_cnn_count(),
    'c3d_small': spacetime_count((16, 32, 64)),
    'framewise_2d': spacetime_count((24, 56, 112), temporal_kernel=1),
    'r2plus1d_small': r2plus1d_count((16, 32, 64)),
    'char_cnn': char_cnn_count(),
    'kim_cnn': kim_cnn_count(),
}
# Models of images [height, width, channels], of waveforms [samples, 1] (8 kHz), of byte codes
# [length, 1], of clips [t, h, w, c].
IMAGE_MODELS = sorted(n for n in EXPECTED_PARAMS if len(models.get_spec(n).input_shape) == 3)
SPEECH_MODELS = sorted(n for n in EXPECTED_PARAMS if len(models.get_spec(n).input_shape) == 2
                       and models.get_spec(n).input_shape[0] == 8000)
TEXT_MODELS = sorted(n for n in EXPECTED_PARAMS if len(models.get_spec(n).input_shape) == 2
                     and n not in SPEECH_MODELS)
VIDEO_MODELS = sorted(n for n in EXPECTED_PARAMS if len(models.get_spec(n).input_shape) == 4)


def test_registry_has_every_architecture_of_the_zoo():
  assert models.list_models() == sorted(EXPECTED_PARAMS)


# One model per distinct construction: the registry's other entries repeat these blocks at other
# depths (resnet34-152, resnet32-110, vgg13-19).
FAMILIES = ('alexnet', 'alexnet_2012', 'zfnet', 'lenet5', 'lenet5_elu', 'lenet5_1998', 'nin',
            'googlenet', 'googlenet_bn', 'googlenet_torchvision', 'densenet121', 'resnet18',
            'resnet50', 'resnext50_32x4d', 'resnet20', 'wrn16_8', 'vgg11', 'vgg11_bn', 'speednet',
            'mobilenet_v3_small', 'regnet_y_400mf', 'convnext_tiny', 'm5',
            'logmel_cnn', 'c3d_small', 'r2plus1d_small', 'framewise_2d', 'char_cnn', 'kim_cnn')


def by_family(names):
  """names, with those that only repeat a family's blocks at another depth marked slow: the edit
  loop (-m "not slow") compiles each construction once."""
  return [n if n in FAMILIES else pytest.param(n, marks=pytest.mark.slow) for n in names]


# The models whose training the edit loop compiles: convolution, pooling, dense, batch norm and
# residual blocks, in seconds. Every other family trains in the full suite (`edit_loop`).
EDIT_LOOP = ('lenet5', 'lenet5_1998', 'lenet5_elu', 'resnet20', 'vgg11')


def edit_loop(names):
  """names, with all but EDIT_LOOP's marked slow: tests that train each model."""
  return [n if n in EDIT_LOOP else pytest.param(n, marks=pytest.mark.slow) for n in names]


@pytest.mark.parametrize('name', by_family(sorted(EXPECTED_PARAMS)))
def test_exact_parameter_count_at_native_input(name):
  spec = models.get_spec(name)
  assert num_params(models.create(name), spec.input_shape) == EXPECTED_PARAMS[name]


def test_hand_counts_match_the_papers_rounded_figures():
  assert alexnet_2012_count() == 60_965_224  # "60 million parameters"
  assert [round(cifar_resnet_count(d) / 1e6, 2) for d in (20, 32, 44, 56)] == [
      0.27, 0.46, 0.66, 0.85]
  assert round(cifar_resnet_count(110) / 1e6, 1) == 1.7
  assert round(nin_count() / 1e6, 2) == 0.97
  # Wide ResNets' Table 1 (CIFAR-10): 11.0M, 36.5M and 8.9M parameters.
  assert [round(wrn_count(d, k) / 1e6, 1) for d, k in ((16, 8), (28, 10), (40, 4))] == [
      11.0, 36.5, 8.9]
  assert round(densenet_bc_count() / 1e6, 1) == 0.8  # DenseNet-BC (L=100, k=12), Table 2.


def test_lenet5_1998_parameters_per_layer_match_the_paper():
  variables = jax.eval_shape(lambda: models.create('lenet5_1998').init(
      jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 1)), train=False))
  sizes = {name: sum(x.size for x in jax.tree.leaves(p)) for name, p in variables['params'].items()}
  assert sizes == {'Conv_0': 156, 'S2': 12, 'C3': 1_516, 'S4': 32, 'Conv_1': 48_120,
                   'F6': 10_164}


def test_lenet5_parameters_per_layer():
  variables = jax.eval_shape(lambda: models.create('lenet5').init(
      jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)), train=False))
  sizes = {name: sum(x.size for x in jax.tree.leaves(p)) for name, p in variables['params'].items()}
  assert sizes == {'Conv_0': 156, 'Conv_1': 2416, 'Dense_0': 48120, 'Dense_1': 10164,
                   'classifier': 850}


@pytest.mark.parametrize('activation', [pytest.param(nn.relu, marks=pytest.mark.slow), layers.elu,
                                        pytest.param(jnp.tanh, marks=pytest.mark.slow)])
def test_lenet5_pooling_before_a_monotone_activation_is_the_same_network(activation):
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 28, 28, 1))
  after = lenet.LeNet5(activation=activation)
  first = lenet.LeNet5(activation=activation, pool_first=True)
  variables = after.init(jax.random.PRNGKey(1), x)
  loss = lambda model: lambda v: jnp.sum(model.apply(v, x) ** 2)
  np.testing.assert_allclose(first.apply(variables, x), after.apply(variables, x), rtol=1e-6)
  grads = [jax.grad(loss(model))(variables) for model in (first, after)]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), *grads)


def test_lenet5_refuses_to_pool_first_with_an_average_pool():
  model = lenet.LeNet5(pool=lambda x: layers.pool(x, 'avg', 2, 2), pool_first=True)
  with pytest.raises(ValueError, match='pool_first needs max pooling'):
    model.init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))


def test_googlenet_auxiliary_heads_add_their_parameters():
  model = models.create('googlenet', aux_logits=True)
  assert num_params(model, (224, 224, 3)) == googlenet_count(aux=True)


# ------------------------------------------------------------------------------------------------
# FLOPs: forward multiply-adds per image equal torchvision's published GMACs.

PUBLISHED_GMACS = {'alexnet': 0.714, 'vgg11': 7.61, 'vgg13': 11.31, 'vgg16': 15.47,
                   'vgg19': 19.63, 'resnet18': 1.81, 'resnet34': 3.66, 'resnet50': 4.09,
                   'resnet101': 7.80, 'resnet152': 11.51, 'densenet121': 2.83}


@pytest.mark.parametrize('name', by_family(sorted(PUBLISHED_GMACS)))
def test_flops_match_published_gmacs(name):
  flops = summary.flops_per_image(models.create(name), (224, 224, 3))
  digits = len(str(PUBLISHED_GMACS[name]).split('.')[1])
  assert round(flops / 2 / 1e9, digits) == PUBLISHED_GMACS[name]


def test_lenet5_1998_flops_count_connections_not_the_zero_kernel_entries():
  layers_ = {layer.path: layer for layer in summary.layers(models.create('lenet5_1998'),
                                                           (32, 32, 1))}
  # The paper: C1 has 122,304 connections, C3 151,600, C5 48,120 (each including one bias term).
  assert layers_['Conv_0'].multiply_adds == 122_304 - 28 * 28 * 6
  assert layers_['C3'].multiply_adds == 151_600 - 10 * 10 * 16
  assert layers_['Conv_1'].multiply_adds == 48_120 - 120


def test_layer_by_layer_flops_equal_the_compiled_program_for_a_valid_conv():
  model = models.create('lenet5')
  x = jnp.zeros((1, 28, 28, 1))
  variables = model.init(jax.random.PRNGKey(0), x)
  conv_only = lambda v, x: jax.lax.conv_general_dilated(
      x, v['params']['Conv_1']['kernel'], (1, 1), 'VALID',
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  cost = jax.jit(conv_only).lower(variables, jnp.zeros((1, 14, 14, 6))).compile().cost_analysis()
  mine = [l for l in summary.layers(model, (28, 28, 1)) if l.path == 'Conv_1'][0].multiply_adds
  assert cost['flops'] == 2 * mine


# ------------------------------------------------------------------------------------------------
# Inputs: native, small images, and inputs a model cannot take.

def test_hand_counts_match_dai_et_al_table_1():
  """The paper's sizes, M3 0.2M, M5 0.5M, M11 1.8M, M18 3.7M, are ours (0.22M, 0.56M, 1.78M,
  3.68M with batch norm and a 10-class classifier) to within 0.1M."""
  paper = {'m3': 0.2, 'm5': 0.5, 'm11': 1.8, 'm18': 3.7}
  assert all(abs(EXPECTED_PARAMS[n] / 1e6 - size) < 0.1 for n, size in paper.items())


@pytest.mark.parametrize('name', SPEECH_MODELS)
def test_every_speech_model_takes_a_second_of_8khz_audio(name):
  model = models.create(name, num_classes=10)
  logits = jax.eval_shape(lambda: model.init_with_output(
      jax.random.PRNGKey(0), jnp.zeros((2, 8000, 1)))[0])
  assert logits.shape == (2, 10) and logits.dtype == jnp.float32


def test_r2plus1d_keeps_a_3x3x3_convs_parameters():
  """Tran et al. 2018 (section 3.5): with 64 channels in and out, M = 144, and 1x3x3 + 3x1x1
  hold as many weights as 3x3x3 (110,592)."""
  middle = video.intermediate_channels(64, 64)
  assert middle == 144 and 9 * 64 * middle + 3 * middle * 64 == 27 * 64 * 64


@pytest.mark.parametrize('name', VIDEO_MODELS)
def test_every_video_model_takes_a_moving_fashion_mnist_clip(name):
  model = models.create(name)
  logits = jax.eval_shape(lambda: model.init_with_output(
      jax.random.PRNGKey(0), jnp.zeros((2, 8, 36, 72, 1)))[0])
  assert logits.shape == (2, 5) and logits.dtype == jnp.float32


def test_the_frame_wise_baseline_is_blind_to_frame_order_and_c3d_is_not():
  """Shuffling a clip's frames changes nothing a frame-wise net computes: it cannot see motion.
  A 3x3x3 net sees frames together."""
  clip = jax.random.uniform(jax.random.PRNGKey(1), (2, 4, 12, 24, 1))
  shuffled = clip[:, jnp.array([2, 0, 3, 1])]
  for name, blind in (('framewise_2d', True), ('c3d_small', False)):
    model = models.create(name, **TINY[name])
    variables = model.init(jax.random.PRNGKey(0), clip)
    same = jnp.allclose(model.apply(variables, clip), model.apply(variables, shuffled), atol=1e-5)
    assert bool(same) == blind, name


@pytest.mark.parametrize('name', edit_loop(IMAGE_MODELS))
def test_every_model_takes_28x28_grayscale(name):
  model = models.create(name, num_classes=10, input_shape=(28, 28, 1))
  logits = jax.eval_shape(lambda: model.init_with_output(
      jax.random.PRNGKey(0), jnp.zeros((2, 28, 28, 1)))[0])
  assert logits.shape == (2, 10) and logits.dtype == jnp.float32


def test_small_image_stem_is_chosen_by_input_size_and_can_be_forced():
  assert models.create('resnet18', input_shape=(224, 224, 3)).stem == 'imagenet'
  assert models.create('resnet18', input_shape=(32, 32, 3)).stem == 'small'
  assert models.create('resnet18', input_shape=(32, 32, 3), small_inputs=False).stem == 'imagenet'
  assert models.create('resnet18', input_shape=(224, 224, 3), small_inputs=True).stem == 'small'
  assert models.create('vgg11', input_shape=(28, 28, 1)).head_width == 512
  assert models.create('resnet20', input_shape=(224, 224, 3)).stem == 'small'  # Native CIFAR.


def test_too_small_input_names_the_layer_whose_output_would_be_empty():
  with pytest.raises(input_shapes.InputShapeError, match=r'layer Conv_1 \(Conv\).*4x4x6 -> 0x0x16'):
    input_shapes.check(models.create('lenet5'), (8, 8, 1))
  alexnet = models.create('alexnet', input_shape=(28, 28, 1), small_inputs=False)
  with pytest.raises(input_shapes.InputShapeError, match=r'layer Pool_1 \(Pool\).*2x2x192 -> 0x0x192'):
    input_shapes.check(alexnet, (28, 28, 1))
  with pytest.raises(input_shapes.InputShapeError, match='up to 32x32'):
    input_shapes.check(models.create('lenet5_1998'), (40, 40, 1))


def test_registry_lists_gets_and_rejects():
  assert models.list_models('lenet*') == ['lenet5', 'lenet5_1998', 'lenet5_elu']
  assert models.list_models('resnet1*') == ['resnet101', 'resnet110', 'resnet152', 'resnet18']
  spec = models.get_spec('resnet50')
  assert (spec.input_shape, spec.num_classes) == ((224, 224, 3), 1000)
  assert models.get_spec('resnet20').input_shape == (32, 32, 3)
  with pytest.raises(models.UnknownModelError, match="unknown model 'lenet7' \\(did you mean 'lenet5'\\?\\).*lenet5"):
    models.create('lenet7')
  with pytest.raises(models.UnknownModelError, match="'ResNet-20' \\(did you mean 'resnet20'\\?\\)"):
    models.create('ResNet-20')
  with pytest.raises(models.UnknownModelError, match="'transformer'; valid"):  # Nothing close.
    models.create('transformer')


def test_num_classes_override_and_half_precision():
  model = models.create('lenet5', num_classes=7)
  assert num_params(model, (28, 28, 1)) == 61_706 - 3 * 85
  model = models.create('resnet20', dtype=jnp.bfloat16)
  x = jnp.ones((2, 32, 32, 3))
  variables = model.init(jax.random.PRNGKey(0), x)
  assert {p.dtype for p in jax.tree.leaves(variables)} == {jnp.dtype('float32')}
  assert model.apply(variables, x).dtype == jnp.float32


# ------------------------------------------------------------------------------------------------
# Behaviour of every model, on tiny variants: same block structure, narrower (and for the deepest,
# shallower) so the whole zoo compiles in about a minute.

TINY = {
    'alexnet': dict(widths=(8, 16, 16, 16, 16), head_width=32),
    'alexnet_2012': dict(widths=(8, 16, 16, 16, 16), head_width=32),
    'zfnet': dict(widths=(8, 16, 16, 16, 16), head_width=32),
    **{f'vgg{d}{bn}': dict(widths=(8, 8, 16, 16, 16), head_width=64, dropout_rate=0.1)
       for d in (11, 13, 16, 19) for bn in ('', '_bn')},
    **{f'resnet{d}': dict(widths=(8, 8, 16, 16), stage_sizes=(1, 1, 1, 1))
       for d in (18, 34, 50, 101, 152)},
    # One block per stage: 32 groups of one channel, then of two (stage 3's 32 * 4 // 64 each).
    'resnext50_32x4d': dict(widths=(16, 16, 32, 32), stage_sizes=(1, 1, 1, 1)),
    'wide_resnet50_2': dict(widths=(8, 8, 16, 16), stage_sizes=(1, 1, 1, 1)),
    **{f'resnet{d}': dict(stage_sizes=(1, 1, 1)) for d in (20, 32, 44, 56, 110)},
    'densenet121': dict(growth_rate=4, init_features=8, block_sizes=(1, 1, 1, 1)),
    'densenet_bc100': dict(growth_rate=4, init_features=8, block_sizes=(1, 1, 1)),
    'mobilenet_v2': dict(stages=((1, 8, 1, 1), (6, 8, 2, 2), (6, 16, 1, 2))),
    **{name: dict(settings=((3, 16, 16, True, False, 2), (5, 24, 16, True, True, 1),
                            (3, 32, 24, False, True, 2)), last_width=32)
       for name in ('mobilenet_v3_small', 'mobilenet_v3_large')},
    'efficientnet_b0': dict(stages=((1, 3, 1, 8, 1), (6, 5, 2, 16, 2))),
    **{name: dict(depth=3, w_0=8, w_a=8, w_m=2) for name in ('regnet_x_400mf', 'regnet_y_400mf')},
    # Layer scale 1: at its 1e-6 the blocks' branches (and their stochastic depth) are invisible.
    'convnext_tiny': dict(stage_sizes=(1, 1, 1, 1), widths=(8, 16, 16, 16), layer_scale=1.0),
    'nin': dict(width=16),
    'speednet': dict(stem_width=4, widths=(8, 8, 16)),
    'googlenet': dict(aux_logits=True, stages=(((4, 4, 4, 2, 2, 2),),
                                               ((4, 4, 4, 2, 2, 2),) * 3, ((8, 4, 8, 2, 4, 4),))),
    'googlenet_bn': dict(stages=(((4, 4, 4, 2, 2, 2),), ((8, 4, 8, 2, 4, 4),))),
    'googlenet_torchvision': dict(stages=(((4, 4, 4, 2, 2, 2),), ((8, 4, 8, 2, 4, 4),))),
    **{f'm{d}': dict(stem=(8, 80, 4), stages=((8, 1), (16, 1))) for d in (3, 5, 11, 18)},
    'logmel_cnn': dict(widths=(4, 8)),
    **{name: dict(widths=(4, 8)) for name in ('c3d_small', 'r2plus1d_small', 'framewise_2d')},
    'char_cnn': dict(features=8, hidden=16, convs=((3, 2), (3, 0))),
    'kim_cnn': dict(embedding=4, filters=4),
}


def tiny_input_shape(name):
  """The input a model's tiny variant is tested on: LeNet's 28x28x1, a quarter second of audio
  for speech models, four 12x24 frames for video models, 64 bytes for text models, else
  16x16x3."""
  if name in SPEECH_MODELS:
    return (2000, 1)
  if name in VIDEO_MODELS:
    return (4, 12, 24, 1)
  if name in TEXT_MODELS:
    return (64, 1)
  return (28, 28, 1) if name.startswith('lenet') else (16, 16, 3)


def trains_differently(model, variables, x) -> bool:
  """Whether training mode should change the output, read off the model itself: it keeps batch
  statistics, or it asks for the 'dropout' rng when applied in training mode."""
  if variables.get('batch_stats'):
    return True
  try:
    jax.eval_shape(lambda: model.apply(variables, x, train=True, mutable=['intermediates']))
  except flax.errors.InvalidRngError:
    return True
  return False


def tiny_model(name, input_shape):
  return models.create(name, num_classes=5, input_shape=input_shape, **TINY.get(name, {}))


@pytest.mark.parametrize('name', edit_loop(sorted(EXPECTED_PARAMS)))
def test_model_is_pure_returns_features_and_learns(name):
  """Per model, on a tiny variant (same blocks; narrower, and one block per stage):"""
  shape = tiny_input_shape(name)
  model = tiny_model(name, shape)
  dp = parallel.DataParallel(1)
  state = steps.create_train_state(model, optax.adam(1e-3), shape, seed=0)
  images = jax.random.randint(jax.random.PRNGKey(3), (8,) + shape, 0, 256).astype(jnp.uint8)
  labels = jnp.arange(8) % 5
  normalize = lambda u: (u.astype(jnp.float32) - 127.5) / 64

  @jax.jit
  def forward(params, batch_stats):
    variables = {'params': params, 'batch_stats': batch_stats}
    x = normalize(images)
    logits, features = model.apply(variables, x, return_features=True)
    # Training-mode logits under 16 fixed dropout keys: the loss test averages over them, so
    # dropout noise cannot decide it.
    train_logits = jax.vmap(lambda key: model.apply(
        variables, x, train=True, rngs={'dropout': key},
        mutable=('batch_stats', 'intermediates'))[0])(jax.random.split(jax.random.PRNGKey(4), 16))
    return model.apply(variables, x), logits, features, train_logits

  plain, logits, features, train_logits = forward(state.params, state.batch_stats)
  # Pure: the same parameters and input give the same output, called two ways.
  np.testing.assert_array_equal(plain, logits)
  assert logits.shape == (8, 5) and logits.dtype == jnp.float32
  # Features: the penultimate activations, which the classifier maps to the logits.
  assert features.ndim == 2 and features.shape[0] == 8
  if 'classifier' in state.params:
    head = state.params['classifier']
    np.testing.assert_allclose(features @ head['kernel'] + head['bias'], logits, rtol=1e-4,
                               atol=1e-4)
  # Train and eval modes differ exactly where the model has dropout or batch norm.
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  differs = trains_differently(model, variables, normalize(images))
  assert (not np.allclose(train_logits[0], logits)) == differs

  # The real pmapped train step (with aux losses for GoogLeNet) lowers the loss on a fixed batch.
  step = dp.pmap_step(functools.partial(steps.train_step, normalize=normalize,
                                        schedule=optax.constant_schedule(1e-3),
                                        recipe=steps.Recipe(aux_loss_weight=0.3)))
  replicated = dp.replicate(state)
  for _ in range(5):
    replicated, _ = step(replicated, dp.shard({'image': images, 'label': labels}))
  trained = dp.unreplicate(replicated)
  loss = lambda out: float(jax.vmap(steps.cross_entropy, (0, None))(out[3], labels).mean())
  before, after = loss((plain, logits, features, train_logits)), loss(
      forward(trained.params, trained.batch_stats))
  assert np.isfinite(after) and after < before, (before, after)


@pytest.mark.slow  # Compiles GoogLeNet in both modes.
def test_googlenet_sows_two_auxiliary_logits_in_training_only():
  model = models.create('googlenet', num_classes=7, input_shape=(32, 32, 3), aux_logits=True)
  x = jnp.zeros((2, 32, 32, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
  _, state = jax.eval_shape(
      lambda v: model.apply(v, x, train=True, mutable=['intermediates'],
                            rngs={'dropout': jax.random.PRNGKey(0)}), variables)
  assert [a.shape for a in state['intermediates']['aux_logits']] == [(2, 7), (2, 7)]
  _, state = jax.eval_shape(lambda v: model.apply(v, x, mutable=['intermediates']), variables)
  assert 'intermediates' not in state or not state['intermediates']


# ------------------------------------------------------------------------------------------------
# LeNet-5 (1998) pieces.

def test_c3_table_connects_60_pairs_as_the_paper_table():
  pairs = {(i, o) for o, maps in enumerate(lenet.C3_TABLE) for i in maps}
  assert len(pairs) == 60
  assert [len(maps) for maps in lenet.C3_TABLE] == [3] * 6 + [4] * 9 + [6]


def test_partial_conv_is_a_dense_conv_with_unconnected_kernels_zeroed():
  layer = lenet.PartialConv(lenet.C3_TABLE)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 14, 14, 6))
  variables = layer.init(jax.random.PRNGKey(1), x)
  kernel, bias = variables['params']['kernel'], variables['params']['bias']
  dense = np.zeros((5, 5, 6, 16), np.float32)
  connection = 0
  for o, maps in enumerate(lenet.C3_TABLE):
    for i in maps:
      dense[:, :, i, o] = kernel[:, :, connection]
      connection += 1
  expected = jax.lax.conv_general_dilated(x, dense, (1, 1), 'VALID',
                                          dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + bias
  np.testing.assert_allclose(layer.apply(variables, x), expected, rtol=1e-5, atol=1e-5)
  # Map 0 sees S2 maps 0-2 only: changing map 5 leaves it unchanged.
  moved = layer.apply(variables, x.at[..., 5].add(1.0))
  np.testing.assert_allclose(moved[..., 0], layer.apply(variables, x)[..., 0], atol=1e-6)


def test_rbf_outputs_are_negative_distances_to_fixed_digit_prototypes():
  prototypes = lenet.rbf_prototypes(10)
  assert prototypes.shape == (10, 84) and set(np.unique(prototypes)) == {-1.0, 1.0}
  assert len({p.tobytes() for p in prototypes}) == 10
  assert lenet.rbf_prototypes(12).shape == (12, 84)
  model = models.create('lenet5_1998')
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 32, 32, 1))
  variables = model.init(jax.random.PRNGKey(1), x)
  logits, features = model.apply(variables, x, return_features=True)
  expected = -((features[:, None, :] - prototypes) ** 2).sum(-1)
  np.testing.assert_allclose(logits, expected, rtol=1e-5)
  assert np.all(np.abs(features) < 1.7159)  # F6 is squashed by the scaled tanh.


def test_lenet5_1998_centres_28x28_images_in_the_32x32_field():
  model = models.create('lenet5_1998')
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 28, 28, 1))
  variables = model.init(jax.random.PRNGKey(1), x)
  padded = jnp.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)), mode='edge')
  np.testing.assert_allclose(model.apply(variables, x), model.apply(variables, padded))


@pytest.mark.parametrize('name', edit_loop(['resnet18', 'resnet20', 'densenet121']))
def test_normalization_and_activation_are_constructor_fields(name):
  shape = (32, 32, 3)
  bn = num_params(models.create(name, input_shape=shape), shape)
  # Group norm has the same per-channel scale and offset as batch norm, and no running averages.
  group = models.create(name, input_shape=shape, normalization='group')
  assert num_params(group, shape) == bn
  variables = jax.eval_shape(lambda: group.init(jax.random.PRNGKey(0), jnp.zeros((1,) + shape)))
  assert 'batch_stats' not in variables
  none = models.create(name, input_shape=shape, normalization='none', activation=jnp.tanh)
  assert num_params(none, shape) < bn
  out = jax.eval_shape(lambda: none.init_with_output(jax.random.PRNGKey(0),
                                                     jnp.zeros((2,) + shape))[0])
  assert out.shape == (2, models.get_spec(name).num_classes)


def test_group_norm_and_no_norm_resnets_run_and_differ():
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 16, 16, 3))
  outputs = []
  for normalization in layers.NORMS:
    model = models.create('resnet20', normalization=normalization, stage_sizes=(1, 1, 1))
    variables = model.init(jax.random.PRNGKey(0), x)
    outputs.append(model.apply(variables, x, train=True, mutable=['batch_stats'])[0])
  assert all(np.isfinite(o).all() for o in outputs)
  assert not np.allclose(outputs[0], outputs[1]) and not np.allclose(outputs[1], outputs[2])


def test_googlenet_transform_input_rescales_imagenet_normalised_pixels_to_unit_range():
  """torchvision's ported GoogLeNet weights expect (p - 0.5) / 0.5 for pixels p in [0, 1]."""
  from convjax.data import datasets
  from convjax.models import googlenet
  pixels = jax.random.uniform(jax.random.PRNGKey(0), (2, 4, 4, 3))
  normalised = (pixels - jnp.asarray(datasets.IMAGENET_MEAN)) / jnp.asarray(datasets.IMAGENET_STD)
  np.testing.assert_allclose(googlenet._to_unit_range(normalised), (pixels - 0.5) / 0.5,
                             atol=1e-6)

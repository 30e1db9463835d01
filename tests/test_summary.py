"""The layer table: receptive fields and cumulative strides against hand arithmetic, FLOPs against
hand counts, and the command that prints it."""
import os
import subprocess
import sys

import flax.linen as nn
import pytest

from convjax import models
from convjax.analysis import summary
from convjax.nn import layers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ThreeLayerStack(nn.Module):
  """conv 3x3 / 1, conv 3x3 / 2, max pool 2x2 / 2, on 16x16x1."""

  @nn.compact
  def __call__(self, x, train=False):
    del train
    x = nn.relu(layers.conv2d(4, 3)(x))
    x = nn.relu(layers.conv2d(4, 3, strides=2)(x))
    return layers.max_pool(x, window=2)


def test_receptive_field_of_a_three_layer_stack_matches_hand_values():
  rows = summary.layers(ThreeLayerStack(), (16, 16, 1))
  # r' = r + (k - 1) j, j' = j s:  3x3/1: r 1+2=3, j 1;  3x3/2: r 3+2=5, j 2;  2x2/2: r 5+1*2=7, j 4.
  assert [(r.kind, r.receptive_field, r.stride) for r in rows] == [
      ('Conv', (3, 3), (1, 1)), ('Conv', (5, 5), (2, 2)), ('Pool', (7, 7), (4, 4))]
  assert [r.output_shape for r in rows] == [(16, 16, 4), (8, 8, 4), (4, 4, 4)]


def test_dilation_widens_the_receptive_field_and_rectangular_kernels_stay_per_axis():
  class Dilated(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
      x = layers.conv2d(2, 3, dilation=2)(x)        # r = 1 + 2*2 = 5
      return layers.conv2d(2, (1, 5), strides=(1, 2))(x)  # r = (5, 5 + 4) = (5, 9), j = (1, 2)
  rows = summary.layers(Dilated(), (12, 12, 1))
  assert rows[0].receptive_field == (5, 5)
  assert rows[1].receptive_field == (5, 9) and rows[1].stride == (1, 2)


def test_well_known_receptive_fields_of_full_models():
  vgg16 = {r.path: r for r in summary.layers(models.create('vgg16'), (224, 224, 3))}
  assert vgg16['Conv_12'].receptive_field == (196, 196)  # conv5_3.
  assert vgg16['Pool_4'].receptive_field == (212, 212) and vgg16['Pool_4'].stride == (32, 32)
  resnet18 = summary.layers(models.create('resnet18'), (224, 224, 3))
  last_block = [r for r in resnet18 if r.path == 'BasicBlock_7'][0]
  assert last_block.receptive_field == (435, 435) and last_block.stride == (32, 32)
  # A block with a kernel_size field of its own (ConvNormAct) is a container, not a convolution:
  # stem 3x3/2, then block 1's depthwise 3x3/2.
  small = {r.path: r for r in summary.layers(models.create('mobilenet_v3_small'), (224, 224, 3))}
  assert small['stem'].receptive_field == (3, 3) and small['stem'].stride == (2, 2)
  assert small['block1'].receptive_field == (7, 7) and small['block1'].stride == (4, 4)
  assert small['head'].stride == (32, 32)


def test_lenet5_rows_match_a_hand_count():
  rows = summary.layers(models.create('lenet5'), (28, 28, 1))
  # C1: 28*28*6 outputs x 25 taps; C3: 10*10*16 x 150; then 400->120, 120->84, 84->10.
  hand_macs = [28 * 28 * 6 * 25, 0, 10 * 10 * 16 * 150, 0, 400 * 120, 120 * 84, 84 * 10]
  assert [r.multiply_adds for r in rows] == hand_macs
  assert [r.receptive_field[0] for r in rows] == [5, 6, 14, 16, 28, 28, 28]
  assert summary.flops_per_image(models.create('lenet5'), (28, 28, 1)) == 2 * sum(hand_macs)
  assert sum(r.params for r in rows) == 61_706


def test_a_single_conv_layers_flops_match_a_hand_count():
  class OneConv(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
      return layers.conv2d(8, 3, strides=2, padding=1, groups=2)(x)
  rows = summary.layers(OneConv(), (9, 9, 4))
  # 5x5 output positions x 8 maps, each fed by 3*3 taps of 4/2 input maps.
  assert rows[0].flops == 2 * (5 * 5 * 8) * (3 * 3 * 2)


@pytest.mark.slow
def test_summary_command_prints_the_table_with_totals():
  result = subprocess.run([sys.executable, '-m', 'experiments.summary', '--model=lenet5'],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert lines[1].split() == ['layer', 'type', 'output', 'params', 'FLOPs', 'RF', 'stride']
  # 2 x (117,600 + 240,000 + 48,000 + 10,080 + 840) FLOPs.
  assert lines[-2].split() == ['total', '61,706', '833,040']


@pytest.mark.slow
@pytest.mark.parametrize('args,message', [
    (['--model=lenet9'], "pattern 'lenet9' matches no model"),
    (['--model=lenet5', '--input_shape=8,8,1'], 'layer Conv_1 (Conv) would output an empty map'),
    (['--model=lenet5', '--input_shape=28,28'], '--input_shape must be three positive integers'),
])
def test_summary_command_rejects_bad_input_in_one_sentence(args, message):
  result = subprocess.run([sys.executable, '-m', 'experiments.summary', *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 1
  assert result.stderr.startswith('error: ')
  assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1

"""Importing torchvision's weights: names, layouts, the exactly-once rule, files and errors.

CI has no PyTorch: state dicts are built with torchvision's names and shapes as NumPy arrays. Where
torch, torchvision and timm import (benchmarks/requirements-torchvision.txt), the last tests check
every supported model's logits against torchvision's own, and timm's ResNets' and DenseNet's.
"""
import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from benchmarks import torchvision_reference
from configs import default
from convjax import models
from convjax.models import torchvision_weights
from convjax.training import checkpoint, run_identity, saved_run, workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Tiny variants: the same layer structure and names, a few channels per layer.
TINY = {
    'alexnet': dict(widths=(4, 6, 8, 8, 5), head_width=12),
    'vgg11_bn': dict(widths=(4, 6, 8, 8, 5), head_width=12),
    'resnet18': dict(widths=(4, 6, 8, 8)),
    'resnet50': dict(widths=(4, 6, 8, 8)),
    'resnext50_32x4d': dict(widths=(16, 16, 16, 16)),  # 32 groups of 16 * 4 // 64 = 1 channel.
    'densenet121': dict(growth_rate=4, init_features=8, block_sizes=(2, 2, 2, 2)),
    'googlenet_torchvision': dict(aux_logits=True, stages=(
        ((4, 4, 4, 2, 2, 2),), ((4, 4, 4, 2, 2, 2),) * 3, ((8, 4, 8, 2, 4, 4),))),
    # Blocks with and without expansion, squeeze-excite and shortcut.
    'mobilenet_v2': dict(stages=((1, 8, 1, 1), (6, 8, 2, 2))),
    'mobilenet_v3_small': dict(settings=((3, 16, 16, True, False, 2), (5, 24, 16, False, True, 1)),
                               last_width=12),
    'efficientnet_b0': dict(stages=((1, 3, 1, 8, 1), (6, 5, 2, 16, 2))),
    'regnet_y_400mf': dict(depth=3, w_0=8, w_a=8, w_m=2),
    'convnext_tiny': dict(stage_sizes=(1, 2), widths=(8, 16)),
}


def random_state(model_name, num_classes=7, seed=0, **overrides):
  """A state dict with torchvision's names and shapes, random values, and batch norm's counters."""
  rng = np.random.default_rng(seed)
  shapes = torchvision_weights.torch_state_shapes(model_name, num_classes, **overrides)
  state = {key: rng.standard_normal(shape).astype(np.float32) for key, shape in shapes.items()}
  for key in [k for k in state if k.endswith('running_var')]:
    state[key] = np.abs(state[key]) + 0.5
    state[key.replace('running_var', 'num_batches_tracked')] = np.array(100, np.int64)
  return state


def tiny_state(model_name, **kwargs):
  return random_state(model_name, **TINY[model_name], **kwargs)


def load_tiny(model_name, state, **fields):
  return torchvision_weights.load_torch(model_name, state, num_classes=7, **{**TINY[model_name], **fields})


# ------------------------------------------------------------------------------------------------
# Names and shapes: torchvision's state dicts, entry for entry. Each model's layout is traced once
# for all the tests below.
state_shapes = functools.lru_cache(maxsize=None)(torchvision_weights.torch_state_shapes)

# len(torchvision.models.<name>().state_dict()), num_batches_tracked included.
TORCHVISION_STATE_SIZES = {'alexnet': 16, 'vgg11_bn': 62, 'vgg16': 32, 'resnet18': 122,
                           'resnet50': 320, 'densenet121': 727, 'mobilenet_v2': 314,
                           'mobilenet_v3_small': 244, 'efficientnet_b0': 360,
                           'regnet_y_400mf': 384, 'convnext_tiny': 182}


@pytest.mark.parametrize('name', sorted(TORCHVISION_STATE_SIZES))
def test_state_dict_sizes_match_torchvision(name):
  shapes = state_shapes(name)
  counters = sum(key.endswith('running_mean') for key in shapes)
  assert len(shapes) + counters == TORCHVISION_STATE_SIZES[name]


@pytest.mark.parametrize('name, key, shape', [
    ('resnet18', 'conv1.weight', (64, 3, 7, 7)),
    ('resnet18', 'layer2.0.downsample.0.weight', (128, 64, 1, 1)),
    ('resnet18', 'layer4.1.bn2.running_var', (512,)),
    ('resnet50', 'layer1.0.downsample.1.weight', (256,)),
    ('resnet50', 'layer3.5.conv3.weight', (1024, 256, 1, 1)),
    ('resnet50', 'fc.weight', (1000, 2048)),
    ('resnext50_32x4d', 'layer1.0.conv2.weight', (128, 4, 3, 3)),  # 32 groups of 4 channels.
    ('resnext50_32x4d', 'layer4.2.conv1.weight', (1024, 2048, 1, 1)),
    ('wide_resnet50_2', 'layer1.0.conv2.weight', (128, 128, 3, 3)),
    ('wide_resnet50_2', 'layer4.2.conv3.weight', (2048, 1024, 1, 1)),
    ('vgg11_bn', 'features.25.weight', (512, 512, 3, 3)),
    ('vgg11_bn', 'features.26.running_mean', (512,)),
    ('vgg16', 'features.28.weight', (512, 512, 3, 3)),
    ('vgg16', 'classifier.0.weight', (4096, 25088)),
    ('vgg16', 'classifier.6.bias', (1000,)),
    ('alexnet', 'features.10.weight', (256, 256, 3, 3)),
    ('alexnet', 'classifier.1.weight', (4096, 9216)),
    ('densenet121', 'features.denseblock4.denselayer16.conv2.weight', (32, 128, 3, 3)),
    ('densenet121', 'features.transition3.conv.weight', (512, 1024, 1, 1)),
    ('densenet121', 'features.norm5.running_var', (1024,)),
    ('densenet121', 'classifier.weight', (1000, 1024)),
    ('googlenet_torchvision', 'conv3.bn.running_var', (192,)),
    ('googlenet_torchvision', 'inception4a.branch3.1.conv.weight', (48, 16, 3, 3)),
    ('googlenet_torchvision', 'inception5b.branch4.1.conv.weight', (128, 832, 1, 1)),
    ('googlenet_torchvision', 'fc.weight', (1000, 1024)),
    ('mobilenet_v2', 'features.3.conv.2.weight', (24, 144, 1, 1)),  # Projection: conv, then bn.
    ('mobilenet_v2', 'features.18.0.weight', (1280, 320, 1, 1)),
    ('mobilenet_v3_small', 'features.1.block.1.fc1.weight', (8, 16, 1, 1)),  # No expansion.
    ('mobilenet_v3_small', 'classifier.3.weight', (1000, 1024)),
    ('efficientnet_b0', 'features.6.2.block.3.1.running_var', (192,)),
    ('regnet_y_400mf', 'trunk_output.block1.block1-0.f.b.0.weight', (48, 8, 3, 3)),  # 6 groups.
    ('regnet_y_400mf', 'trunk_output.block2.block2-0.proj.0.weight', (104, 48, 1, 1)),
    ('regnet_y_400mf', 'trunk_output.block4.block4-5.f.se.fc1.weight', (110, 440, 1, 1)),
    ('convnext_tiny', 'features.1.0.block.0.weight', (96, 1, 7, 7)),  # Depthwise.
    ('convnext_tiny', 'features.3.2.block.3.weight', (768, 192)),  # Dense over channels.
    ('convnext_tiny', 'features.5.8.layer_scale', (384, 1, 1)),
    ('convnext_tiny', 'features.6.1.weight', (768, 384, 2, 2)),  # Downsampling to stage 4.
])
def test_torchvision_names_and_shapes(name, key, shape):
  assert state_shapes(name)[key] == shape


# ------------------------------------------------------------------------------------------------
# Layouts.

def test_conv_kernels_become_hwio_and_batch_norm_statistics_come_along():
  state = tiny_state('resnet18')
  variables = load_tiny('resnet18', state)
  stem = state['conv1.weight']  # [out, in, kh, kw]
  np.testing.assert_array_equal(variables['params']['stem_conv']['kernel'],
                                stem.transpose(2, 3, 1, 0))
  block = variables['batch_stats']['BasicBlock_2']  # layer2.0: the first block of stage 2.
  np.testing.assert_array_equal(block['shortcut_norm']['var'],
                                state['layer2.0.downsample.1.running_var'])
  np.testing.assert_array_equal(variables['params']['BasicBlock_2']['BatchNorm_1']['scale'],
                                state['layer2.0.bn2.weight'])
  np.testing.assert_array_equal(variables['params']['classifier']['kernel'], state['fc.weight'].T)


@pytest.mark.parametrize('name', ['alexnet', 'vgg11_bn'])
def test_first_dense_layer_reorders_nchw_flattening_to_nhwc(name):
  """PyTorch flattens a [c, h, w] map as (c * h + y) * w + x; convjax flattens [h, w, c] as
  (y * w + x) * c + c_index. Each input unit must keep its weights."""
  state = tiny_state(name)
  kernel = load_tiny(name, state)['params']['Dense_0']['kernel']  # [h * w * c, out]
  torch_kernel = state['classifier.1.weight' if name == 'alexnet' else 'classifier.0.weight']
  channels = TINY[name]['widths'][-1]
  side = int(np.sqrt(torch_kernel.shape[1] // channels))
  assert side == (6 if name == 'alexnet' else 7)  # The 224x224 input's last map.
  for c, y, x, out in [(0, 0, 0, 0), (channels - 1, 2, 5, 3), (1, side - 1, 0, 11)]:
    assert kernel[(y * side + x) * channels + c, out] == torch_kernel[out, (c * side + y) * side + x]


@pytest.mark.parametrize('name', sorted(TINY))
def test_every_tensor_is_used_exactly_once(name):
  """Every convjax variable takes a distinct torchvision tensor, and none is left over: the values
  arriving in convjax are a permutation of the values sent, counter excluded."""
  state = tiny_state(name)
  variables = load_tiny(name, state)
  received = np.sort(np.concatenate([np.ravel(v) for v in jax.tree.leaves(variables)]))
  sent = np.sort(np.concatenate([v.ravel() for k, v in state.items()
                                 if not k.endswith('num_batches_tracked')]))
  np.testing.assert_array_equal(received, sent)
  # The tree `apply` takes, leaf for leaf.
  model = models.create(name, num_classes=7, **TINY[name])
  expected = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.ones((1, 224, 224, 3))))
  assert (jax.tree.map(np.shape, variables) ==
          jax.tree.map(lambda leaf: leaf.shape, expected))


def test_googlenet_auxiliary_heads_load_or_are_dropped_by_rule():
  """torchvision's GoogLeNet files carry both auxiliary heads; a model without them drops
  exactly those, and their fc1 reads a flattened 128-channel map."""
  state = tiny_state('googlenet_torchvision')
  with_aux = load_tiny('googlenet_torchvision', state)
  kernel, torch_kernel = with_aux['params']['aux_2']['Dense_0']['kernel'], state['aux2.fc1.weight']
  assert kernel.shape[0] == 128 * 4 * 4
  assert kernel[(1 * 4 + 2) * 128 + 5, 3] == torch_kernel[3, (5 * 4 + 1) * 4 + 2]
  without = load_tiny('googlenet_torchvision', state, aux_logits=False)
  assert not any(name.startswith('aux') for name in without['params'])
  assert 'aux1.conv.bn.running_var' in state
  state['aux3.fc1.weight'] = state['aux2.fc1.weight']  # Not a dropped name: refused.
  with pytest.raises(torchvision_weights.WeightsError, match='aux3.fc1.weight'):
    load_tiny('googlenet_torchvision', state, aux_logits=False)


def test_data_parallel_prefix_is_stripped():
  state = tiny_state('resnet18')
  wrapped = {f'module.{key}': value for key, value in state.items()}
  expected = load_tiny('resnet18', state)
  got = load_tiny('resnet18', wrapped)
  jax.tree.map(np.testing.assert_array_equal, got, expected)


# ------------------------------------------------------------------------------------------------
# Files.

def test_safetensors_file_loads_with_numpy_alone(tmp_path):
  state = tiny_state('densenet121')
  path = tmp_path / 'densenet.safetensors'
  save_file(state, str(path))
  jax.tree.map(np.testing.assert_array_equal, load_tiny('densenet121', str(path)),
               load_tiny('densenet121', state))


def test_truncated_safetensors_file_is_one_sentence(tmp_path):
  path = tmp_path / 'resnet.safetensors'
  save_file(tiny_state('resnet18'), str(path))
  path.write_bytes(path.read_bytes()[:-100])
  with pytest.raises(torchvision_weights.WeightsError, match='not a readable safetensors file'):
    load_tiny('resnet18', str(path))


def test_pth_without_torch_says_so(tmp_path, monkeypatch):
  path = tmp_path / 'resnet.pth'
  path.write_bytes(b'not read')
  monkeypatch.setitem(sys.modules, 'torch', None)  # `import torch` raises ImportError.
  with pytest.raises(torchvision_weights.WeightsError, match='needs PyTorch, which is not installed'):
    load_tiny('resnet18', str(path))


@pytest.mark.parametrize('filename, message', [
    ('missing.safetensors', 'no weights file'),
    ('weights.npz', 'neither .safetensors nor a PyTorch file'),
])
def test_bad_paths(tmp_path, filename, message):
  if filename.endswith('.npz'):
    (tmp_path / filename).write_bytes(b'')
  with pytest.raises(torchvision_weights.WeightsError, match=message):
    load_tiny('resnet18', str(tmp_path / filename))


# ------------------------------------------------------------------------------------------------
# Weights that do not fit: the first offending tensor is named.

def test_missing_tensor_is_named():
  state = tiny_state('resnet18')
  del state['layer3.1.bn1.running_mean']
  with pytest.raises(torchvision_weights.WeightsError, match=r"no 'layer3\.1\.bn1\.running_mean'"):
    load_tiny('resnet18', state)


def test_extra_tensor_is_named():
  state = tiny_state('resnet18')
  state['layer5.0.conv1.weight'] = np.zeros((1,), np.float32)
  with pytest.raises(torchvision_weights.WeightsError, match=r"1 tensor\(s\).*'layer5\.0\.conv1\.weight'"):
    load_tiny('resnet18', state)


def test_another_architecture_is_refused():
  """ResNet-18's weights for ResNet-50: the first missing or misshapen tensor is named."""
  with pytest.raises(torchvision_weights.WeightsError, match=r"'layer1\.0\.[a-z0-9._]+'"):
    load_tiny('resnet50', tiny_state('resnet18'))


@pytest.mark.parametrize('weights, model', [('mobilenet_v2', 'mobilenet_v3_small'),
                                            ('mobilenet_v3_small', 'efficientnet_b0')])
def test_another_mobile_family_is_refused(weights, model):
  """Same top-level names (features.N), other blocks: refused, naming a tensor."""
  with pytest.raises(torchvision_weights.WeightsError, match=r"'features\.[a-z0-9._]+'"):
    torchvision_weights.load_torch(model, random_state(weights), num_classes=7)


def test_another_number_of_classes_is_refused():
  with pytest.raises(torchvision_weights.WeightsError, match=r"'fc\.(weight|bias)' has shape 7.*needs 10"):
    torchvision_weights.load_torch('resnet18', tiny_state('resnet18'), num_classes=10, **TINY['resnet18'])


def test_models_without_a_mapping_are_refused():
  with pytest.raises(torchvision_weights.WeightsError, match="no torchvision mapping for 'lenet5'"):
    torchvision_weights.load_torch('lenet5', {})
  with pytest.raises(models.UnknownModelError):
    torchvision_weights.load_torch('resnet19', {})


# ------------------------------------------------------------------------------------------------
# A workdir from a weights file.

def tiny_config(name):
  config = default.get_config()
  config.model, config.dataset, config.num_classes = name, 'imagenet2012', 7
  config.model_kwargs.update(TINY[name])
  return config


def test_converted_workdir_holds_the_variables_and_the_config(tmp_path):
  variables = load_tiny('resnet18', tiny_state('resnet18'))
  workdir = str(tmp_path / 'converted')
  saved_run.write_converted(workdir, tiny_config('resnet18'), variables, 'resnet18.safetensors')
  assert sorted(os.listdir(tmp_path)) == ['converted']  # No staging directory left behind.
  checkpointer = checkpoint.Checkpointer(workdir, max_to_keep=None, create=False)
  step, state, meta = checkpointer.restore_latest()
  checkpointer.close()
  assert step == 0 and meta['model'] == 'resnet18' and meta['input_shape'] == [224, 224, 3]
  jax.tree.map(np.testing.assert_array_equal,
               {k: state[k] for k in ('params', 'batch_stats')}, variables)
  identity, config = run_identity.read(workdir)
  assert (identity.model, identity.num_classes, identity.input_shape, identity.dataset) == (
      'resnet18', 7, (224, 224, 3), config.dataset)
  assert identity.converted_from == os.path.abspath('resnet18.safetensors')
  assert identity.commit == run_identity.checkout_commit()
  assert tuple(config.model_kwargs.widths) == TINY['resnet18']['widths']
  assert 'input_shape' not in config and 'commit' not in config


def test_conversion_never_writes_over_a_run(tmp_path):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  (workdir / 'metrics.jsonl').write_text('{"step": 1}\n')
  variables = load_tiny('resnet18', tiny_state('resnet18'))
  with pytest.raises(workdir_lib.WorkdirError, match='already holds files'):
    saved_run.write_converted(str(workdir), tiny_config('resnet18'), variables, 'x.safetensors')
  assert os.listdir(workdir) == ['metrics.jsonl']


@pytest.mark.slow  # Starts processes or trains a real run.
def test_convert_script_refuses_bad_weights_in_one_sentence_and_writes_nothing(tmp_path):
  (tmp_path / 'alexnet.safetensors').write_bytes(b'\x08\x00\x00\x00\x00\x00\x00\x00{}')
  save_file({'fc.weight': np.zeros((2, 2), np.float32)}, str(tmp_path / 'other.safetensors'))
  for name, message in (('missing.safetensors', 'no weights file'),
                        ('alexnet.safetensors', 'not a readable safetensors file'),
                        ('other.safetensors', "the weights have no 'layer1.0.bn1.running_mean'")):
    result = subprocess.run(
        [sys.executable, '-m', 'experiments.convert', '--model=resnet18',
         f'--weights={tmp_path / name}', f'--workdir={tmp_path / "out"}'],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert not (tmp_path / 'out').exists()


# ------------------------------------------------------------------------------------------------
# Against torchvision itself, where it is installed.

@pytest.mark.parametrize('name', sorted(torchvision_weights.TORCH_FAMILIES))
def test_logits_equal_torchvisions(name):
  pytest.importorskip('torch')
  pytest.importorskip('torchvision')
  result = torchvision_reference.compare(name)
  assert result['relative'] <= 1e-4, result


@pytest.mark.parametrize('name', torchvision_reference.TIMM_MODELS)
def test_logits_equal_timms(name):
  """timm's ResNets and DenseNet-121 name their tensors as torchvision does, so they load too."""
  pytest.importorskip('torch')
  pytest.importorskip('timm')
  result = torchvision_reference.compare(name, library='timm')
  assert result['relative'] <= 1e-4, result

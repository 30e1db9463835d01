"""The model registry: every architecture convjax knows, by name.

Adding a model is one file in this package (a Flax module taking `num_classes`, `dtype`, and
`train` and `return_features` at call time; see models/common.py) plus one entry in `_REGISTRY`.
"""
import dataclasses
import fnmatch
import functools
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax

from convjax import errors
from convjax.nn import layers
from convjax.models import (alexnet, convnext, densenet, googlenet, lenet, mobilenet, nin,
                            preact_resnet, regnet, resnet, speech, speednet, text, vgg, video)

# ImageNet-size models switch to their small-image variant (spec.small_inputs) below this size.
SMALL_INPUT_SIZE = 64


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """How to build a model and what it expects natively.

  Attributes:
    constructor: a Flax module class (or a functools.partial of one).
    input_shape: native input: (height, width, channels) of an image, (samples, 1) of a waveform,
      (frames, height, width, channels) of a clip.
    num_classes: native number of classes.
    small_inputs: constructor overrides for inputs smaller than SMALL_INPUT_SIZE (the small-image
      stem); empty for models native to small images.
    paper: the publication the model follows.
    modality: what the model reads, as the dataset catalogue names it: 'image', 'audio', 'video'
      or 'text'.
    head: fnmatch patterns of the top-level modules whose outputs are the classes, which
      fine-tuning re-initialises for another number of classes and trains above a frozen
      backbone (convjax/training/finetune.py); empty for a model whose class layer has no parameters.
  """
  constructor: Callable[..., nn.Module]
  input_shape: tuple[int, ...]
  num_classes: int
  small_inputs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  paper: str = ''
  head: tuple[str, ...] = ('classifier',)
  modality: str = 'image'


_IMAGENET = dict(input_shape=(224, 224, 3), num_classes=1000)
_CIFAR = dict(input_shape=(32, 32, 3), num_classes=10)
_SMALL_STEM = {'stem': 'small'}
_STRIDE_1_STEM = {'stem_stride': 1}
_GOOGLENET_HEAD = ('classifier', 'aux_*')  # The auxiliary classifiers are heads too.
_FSDD = dict(input_shape=(8000, 1), num_classes=10, modality='audio')  # One second of 8 kHz audio (FSDD's digits).
_MOVING = dict(input_shape=(8, 36, 72, 1), num_classes=5, modality='video')  # A Moving Fashion-MNIST clip.
_FORTUNES = dict(input_shape=(256, 1), num_classes=12, modality='text')  # A quote's first 256 UTF-8 bytes.
_DAI = 'Dai et al. 2017, Very Deep Convolutional Neural Networks for Raw Waveforms'
_RESNET = 'He et al. 2015, Deep Residual Learning for Image Recognition'
_VGG = 'Simonyan & Zisserman 2014, Very Deep Convolutional Networks'


def _vgg(constructor, batch_norm: bool) -> ModelSpec:
  return ModelSpec(functools.partial(constructor, batch_norm=batch_norm), **_IMAGENET,
                   small_inputs={'head_width': 512}, paper=_VGG)


def _cifar_resnet(depth: int) -> ModelSpec:
  return ModelSpec(resnet.cifar_resnet(depth), **_CIFAR, paper=_RESNET + ', section 4.2')


# Wide ResNets (depth, widening factor) of Zagoruyko & Komodakis 2016's CIFAR tables.
WIDE_RESNETS = ((16, 8), (28, 10), (40, 4))


def _wide_resnet(depth: int, width: int) -> ModelSpec:
  return ModelSpec(preact_resnet.wide_resnet(depth, width), **_CIFAR,
                   paper=f'Zagoruyko & Komodakis 2016, Wide Residual Networks (WRN-{depth}-{width})')


_REGISTRY: dict[str, ModelSpec] = {
    'lenet5': ModelSpec(lenet.LeNet5, input_shape=(28, 28, 1), num_classes=10,
                        paper='LeCun et al. 1998, modern variant (ReLU, max pooling, softmax)'),
    # Max pooling commutes with ELU, so pooling first gives the same network at less cost.
    'lenet5_elu': ModelSpec(functools.partial(lenet.LeNet5, activation=layers.elu,
                                              pool_first=True),
                            input_shape=(28, 28, 1), num_classes=10,
                            paper='LeCun et al. 1998, modern variant with ELU '
                                  '(Clevert et al. 2016)'),
    'lenet5_1998': ModelSpec(lenet.LeNet5_1998, input_shape=(32, 32, 1), num_classes=10,
                             paper='LeCun et al. 1998, Gradient-Based Learning Applied to '
                                   'Document Recognition',
                             head=()),  # Fixed RBF prototypes score the classes.
    'alexnet': ModelSpec(alexnet.AlexNetOneTower, **_IMAGENET, small_inputs={'conv1': (5, 1, 2)},
                         paper='Krizhevsky 2014, One weird trick (single tower, torchvision)'),
    'alexnet_2012': ModelSpec(alexnet.AlexNet2012, **_IMAGENET, small_inputs={'conv1': (5, 1, 2)},
                              paper='Krizhevsky, Sutskever & Hinton 2012, ImageNet '
                                    'Classification with Deep CNNs'),
    'zfnet': ModelSpec(alexnet.ZFNet, **_IMAGENET,
                       small_inputs={'conv1': (7, 1, 3), 'conv2': (5, 1, 2)},
                       paper='Zeiler & Fergus 2013, Visualizing and Understanding CNNs'),
    'vgg11': _vgg(vgg.VGG11, False), 'vgg11_bn': _vgg(vgg.VGG11, True),
    'vgg13': _vgg(vgg.VGG13, False), 'vgg13_bn': _vgg(vgg.VGG13, True),
    'vgg16': _vgg(vgg.VGG16, False), 'vgg16_bn': _vgg(vgg.VGG16, True),
    'vgg19': _vgg(vgg.VGG19, False), 'vgg19_bn': _vgg(vgg.VGG19, True),
    'googlenet': ModelSpec(googlenet.GoogLeNet, **_IMAGENET, small_inputs=_SMALL_STEM,
                           paper='Szegedy et al. 2014, Going Deeper with Convolutions',
                           head=_GOOGLENET_HEAD),
    'googlenet_bn': ModelSpec(functools.partial(googlenet.GoogLeNet, batch_norm=True), **_IMAGENET,
                              small_inputs=_SMALL_STEM,
                              paper='Szegedy et al. 2014, with batch norm (Ioffe & Szegedy 2015)',
                              head=_GOOGLENET_HEAD),
    'googlenet_torchvision': ModelSpec(
        functools.partial(googlenet.GoogLeNet, batch_norm=True, bn_epsilon=1e-3,
                          third_branch_kernel=3, last_pool_window=2, dropout_rate=0.2),
        **_IMAGENET, small_inputs=_SMALL_STEM,
        paper="torchvision's GoogLeNet (3x3 third branch, epsilon 1e-3, 2x2 pool before 5a)",
        head=_GOOGLENET_HEAD),
    'resnet18': ModelSpec(resnet.ResNet18, **_IMAGENET, small_inputs=_SMALL_STEM, paper=_RESNET),
    'resnet34': ModelSpec(resnet.ResNet34, **_IMAGENET, small_inputs=_SMALL_STEM, paper=_RESNET),
    'resnet50': ModelSpec(resnet.ResNet50, **_IMAGENET, small_inputs=_SMALL_STEM,
                          paper=_RESNET + ' (v1.5: stride on the 3x3)'),
    'resnet101': ModelSpec(resnet.ResNet101, **_IMAGENET, small_inputs=_SMALL_STEM,
                           paper=_RESNET + ' (v1.5: stride on the 3x3)'),
    'resnet152': ModelSpec(resnet.ResNet152, **_IMAGENET, small_inputs=_SMALL_STEM,
                           paper=_RESNET + ' (v1.5: stride on the 3x3)'),
    'resnext50_32x4d': ModelSpec(resnet.ResNeXt50_32x4d, **_IMAGENET, small_inputs=_SMALL_STEM,
                                 paper='Xie et al. 2017, Aggregated Residual Transformations '
                                       'for Deep Neural Networks (ResNeXt), 32 groups of 4'),
    'wide_resnet50_2': ModelSpec(resnet.WideResNet50_2, **_IMAGENET, small_inputs=_SMALL_STEM,
                                 paper='Zagoruyko & Komodakis 2016, Wide Residual Networks: '
                                       "torchvision's ResNet-50 with bottlenecks twice as wide"),
    'resnet20': _cifar_resnet(20), 'resnet32': _cifar_resnet(32), 'resnet44': _cifar_resnet(44),
    'resnet56': _cifar_resnet(56), 'resnet110': _cifar_resnet(110),
    **{f'wrn{depth}_{width}': _wide_resnet(depth, width) for depth, width in WIDE_RESNETS},
    'preact_resnet18': ModelSpec(preact_resnet.PreActResNet18, **_CIFAR,
                                 paper='He et al. 2016, Identity Mappings in Deep Residual '
                                       'Networks (pre-activation ResNet-18, CIFAR stem)'),
    'densenet121': ModelSpec(densenet.DenseNet121, **_IMAGENET, small_inputs=_SMALL_STEM,
                             paper='Huang et al. 2017, Densely Connected Convolutional Networks'),
    'densenet_bc100': ModelSpec(densenet.DenseNetBC100, **_CIFAR,
                                paper='Huang et al. 2017, DenseNet-BC (L=100, k=12), CIFAR form'),
    'mobilenet_v2': ModelSpec(mobilenet.MobileNetV2, **_IMAGENET, small_inputs=_STRIDE_1_STEM,
                              paper='Sandler et al. 2018, MobileNetV2: Inverted Residuals and '
                                    'Linear Bottlenecks'),
    'mobilenet_v3_small': ModelSpec(mobilenet.MobileNetV3Small, **_IMAGENET,
                                    small_inputs=_STRIDE_1_STEM,
                                    paper='Howard et al. 2019, Searching for MobileNetV3 (small)'),
    'mobilenet_v3_large': ModelSpec(mobilenet.MobileNetV3Large, **_IMAGENET,
                                    small_inputs=_STRIDE_1_STEM,
                                    paper='Howard et al. 2019, Searching for MobileNetV3 (large)'),
    'efficientnet_b0': ModelSpec(mobilenet.EfficientNetB0, **_IMAGENET,
                                 small_inputs=_STRIDE_1_STEM,
                                 paper='Tan & Le 2019, EfficientNet: Rethinking Model Scaling '
                                       'for Convolutional Neural Networks (B0)'),
    'regnet_x_400mf': ModelSpec(regnet.RegNetX400MF, **_IMAGENET, small_inputs=_STRIDE_1_STEM,
                                paper='Radosavovic et al. 2020, Designing Network Design Spaces '
                                      '(RegNetX-400MF)'),
    'regnet_y_400mf': ModelSpec(regnet.RegNetY400MF, **_IMAGENET, small_inputs=_STRIDE_1_STEM,
                                paper='Radosavovic et al. 2020, Designing Network Design Spaces '
                                      '(RegNetY-400MF, squeeze-and-excitation)'),
    'convnext_tiny': ModelSpec(convnext.ConvNeXtTiny, **_IMAGENET, small_inputs={'patch_size': 2},
                               paper='Liu et al. 2022, A ConvNet for the 2020s (ConvNeXt-T)'),
    'nin': ModelSpec(nin.NiN, **_CIFAR, paper='Lin, Chen & Yan 2013, Network in Network',
                     head=('class_maps',)),
    'speednet': ModelSpec(speednet.SpeedNet, input_shape=(28, 28, 1), num_classes=10,
                          paper="convjax's Fashion-MNIST speed-run network, after Page 2018 "
                                '(ResNet-9) and Jordan 2024 (airbench)'),
    # Speech (1-D input: waveforms [samples, 1]).
    'm3': ModelSpec(speech.M3, **_FSDD, paper=_DAI + ', M3'),
    'm5': ModelSpec(speech.M5, **_FSDD, paper=_DAI + ', M5'),
    'm11': ModelSpec(speech.M11, **_FSDD, paper=_DAI + ', M11'),
    'm18': ModelSpec(speech.M18, **_FSDD, paper=_DAI + ', M18'),
    'logmel_cnn': ModelSpec(speech.LogMelNet, **_FSDD,
                            paper='log-mel spectrogram + VGG-style 2-D convnet, after Sainath & '
                                  'Parada 2015 and Tang & Lin 2018'),
    # Text (1-D input: byte codes [length, 1]).
    'char_cnn': ModelSpec(text.CharCNNSmall, **_FORTUNES,
                          paper='Zhang, Zhao & LeCun 2015, Character-level Convolutional Networks '
                                'for Text Classification, small model over bytes, halved'),
    'kim_cnn': ModelSpec(text.KimCNN, **_FORTUNES,
                         paper='Kim 2014, Convolutional Neural Networks for Sentence '
                               'Classification, over bytes'),
    # Video (3-D input: clips [frames, height, width, channels]).
    'c3d_small': ModelSpec(video.C3DSmall, **_MOVING,
                           paper='Tran et al. 2015, Learning Spatiotemporal Features with 3D '
                                 'Convolutional Networks (C3D), scaled down'),
    'r2plus1d_small': ModelSpec(video.R2Plus1DSmall, **_MOVING,
                                paper='Tran et al. 2018, A Closer Look at Spatiotemporal '
                                      'Convolutions for Action Recognition (R(2+1)D), scaled down'),
    'framewise_2d': ModelSpec(video.FrameWise2D, **_MOVING,
                              paper='a 2-D convnet on every frame, features averaged over frames '
                                    '(late fusion; Karpathy et al. 2014): the motion-blind '
                                    'baseline'),
}


class UnknownModelError(errors.UserError, ValueError):
  """A model name that is not in the registry."""


def list_models(pattern: str = '*') -> list[str]:
  """Sorted registry names matching an fnmatch pattern such as 'resnet*'."""
  return sorted(name for name in _REGISTRY if fnmatch.fnmatchcase(name, pattern))


def match(patterns: str) -> list[str]:
  """Registry names matching any of comma-separated fnmatch patterns, in the order the patterns
  come ('lenet5,resnet*'); raises UnknownModelError for a pattern that matches nothing."""
  names = []
  for pattern in (p.strip() for p in patterns.split(',')):
    matched = list_models(pattern)
    if not matched:
      raise UnknownModelError(f"pattern '{pattern}' matches no model; valid models are: "
                              f"{', '.join(list_models())}")
    names += [name for name in matched if name not in names]
  return names


def get_spec(name: str) -> ModelSpec:
  """The registry entry for `name`; raises UnknownModelError listing the valid names."""
  try:
    return _REGISTRY[name]
  except KeyError:
    raise UnknownModelError(f"unknown model '{name}'{errors.did_you_mean(name, _REGISTRY)}; "
                            f"valid models are: {', '.join(list_models())}") from None


# Module fields that `create`'s own arguments and the training config set.
MANAGED_FIELDS = ('num_classes', 'dtype', 'parent', 'name')


def _module_fields(name: str) -> list[dataclasses.Field]:
  constructor = get_spec(name).constructor
  return dataclasses.fields(getattr(constructor, 'func', constructor))


def fields(name: str) -> list[str]:
  """The constructor fields of the model registered as `name` that a config can set
  (config.model_kwargs), sorted: numbers, strings, booleans and sequences of them. Not
  MANAGED_FIELDS, and not functions (activations, pools, blocks), which a config cannot name."""
  return sorted(f.name for f in _module_fields(name)
                if f.init and f.name not in MANAGED_FIELDS and not callable(f.default))


def has_field(name: str, field: str) -> bool:
  """Whether the model registered as `name` takes constructor field `field` (e.g. 'aux_logits')."""
  return field in {f.name for f in _module_fields(name)}


def uses_small_inputs(name: str, input_shape, small_inputs: bool | None = None) -> bool:
  """Whether `create` applies the small-image variant: forced by small_inputs, else automatic
  for inputs (height, width, channels) below SMALL_INPUT_SIZE on models that have one."""
  spec = get_spec(name)
  if not spec.small_inputs:
    return False
  if small_inputs is not None:
    return small_inputs
  return input_shape is not None and min(input_shape[:2]) < SMALL_INPUT_SIZE


def in_head(patterns, module: str) -> bool:
  """Whether the top-level module `module` matches one of the fnmatch `patterns` of a
  ModelSpec.head: whether it is one of the layers whose outputs are the classes."""
  return any(fnmatch.fnmatchcase(module, pattern) for pattern in patterns)


def head_mask(patterns, params) -> Any:
  """A tree like params of bools, True for the leaves of the head's modules (`in_head`)."""
  return {module: jax.tree.map(lambda _: in_head(patterns, module), tree)
          for module, tree in params.items()}


def create(name: str, num_classes: int | None = None, input_shape=None,
           small_inputs: bool | None = None, **overrides: Any) -> nn.Module:
  """Builds the Flax module registered as `name`.

  Args:
    name: a registry name, see `list_models()`.
    num_classes: classifier width; the model's native number when None.
    input_shape: (height, width, channels) the model will see; picks the small-image variant.
    small_inputs: True or False forces the small-image variant on or off; None decides by size.
    **overrides: other module fields, e.g. `dtype=jnp.bfloat16`.
  Returns:
    An unbound module, used as `module.init(rng, x, train=False)` and
    `module.apply(variables, x, train=..., return_features=...)` with x of shape
    [batch, height, width, channels].
  """
  spec = get_spec(name)
  if uses_small_inputs(name, input_shape, small_inputs):
    overrides = {**spec.small_inputs, **overrides}
  return spec.constructor(num_classes=num_classes or spec.num_classes, **overrides)

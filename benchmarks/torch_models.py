"""PyTorch reference implementations of convjax's models, for speed comparisons only.

Same architectures as `convjax.models` layer for layer, with the same parameter counts
(`benchmarks.vs_pytorch` refuses a mismatch): LeNet-5 61,706, ResNet-20 269,722, and at 224x224x3
the torchvision-equivalent ResNet-18 11,689,512, ResNet-50 25,557,032, AlexNet 61,100,840,
VGG-11-BN 132,868,840 and DenseNet-121 7,978,856. They are written out here rather than imported
from torchvision, whose builds do not import with the CPU-only torch wheel this machine installs;
MobileNetV2, EfficientNet-B0 and ConvNeXt-T are torchvision's own, where it is installed.
PyTorch is a benchmark dependency, never a library one: `pip install -r benchmarks/requirements.txt`.
"""
import torch
from torch import nn
from torch.nn import functional as F


class LeNet5(nn.Module):
  """convjax.models.lenet.LeNet5: conv5x5(6, pad 2)-relu-maxpool2, conv5x5(16)-relu-maxpool2,
  dense 120-relu, dense 84-relu, dense num_classes. [b, 1, 28, 28] -> [b, num_classes]."""

  def __init__(self, num_classes: int = 10, in_channels: int = 1):
    super().__init__()
    self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=2)
    self.conv2 = nn.Conv2d(6, 16, 5)
    self.fc1 = nn.Linear(16 * 5 * 5, 120)
    self.fc2 = nn.Linear(120, 84)
    self.classifier = nn.Linear(84, num_classes)

  def forward(self, x):
    x = F.max_pool2d(F.relu(self.conv1(x)), 2)
    x = F.max_pool2d(F.relu(self.conv2(x)), 2)
    x = torch.flatten(x, 1)
    x = F.relu(self.fc1(x))
    x = F.relu(self.fc2(x))
    return self.classifier(x)


class BasicBlock(nn.Module):
  """conv3x3(stride)-bn-relu-conv3x3-bn + option-A shortcut (strided identity, zero-padded
  channels), relu: convjax.models.resnet.BasicBlock with shortcut='A'."""

  def __init__(self, in_planes: int, planes: int, stride: int):
    super().__init__()
    self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.stride, self.extra = stride, planes - in_planes

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    shortcut = x
    if self.stride != 1 or self.extra:
      shortcut = F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, 0, self.extra))
    return F.relu(y + shortcut)


class CifarResNet(nn.Module):
  """ResNet-(6n+2) of He et al. section 4.2: convjax.models.resnet.cifar_resnet(depth)."""

  def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 3):
    super().__init__()
    n = (depth - 2) // 6
    self.stem = nn.Sequential(nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False),
                              nn.BatchNorm2d(16), nn.ReLU())
    blocks, planes = [], 16
    for stage, width in enumerate((16, 32, 64)):
      for index in range(n):
        blocks.append(BasicBlock(planes, width, 2 if stage > 0 and index == 0 else 1))
        planes = width
    self.blocks = nn.Sequential(*blocks)
    self.classifier = nn.Linear(64, num_classes)

  def forward(self, x):
    x = self.blocks(self.stem(x))
    return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Bottleneck(nn.Module):
  """1x1-3x3(stride)-1x1 (4x width), bn after each, projection shortcut where the shape changes:
  convjax.models.resnet.Bottleneck (ResNet v1.5: the stride sits on the 3x3)."""

  def __init__(self, in_planes: int, planes: int, stride: int):
    super().__init__()
    out = 4 * planes
    self.branch = nn.Sequential(
        nn.Conv2d(in_planes, planes, 1, bias=False), nn.BatchNorm2d(planes), nn.ReLU(),
        nn.Conv2d(planes, planes, 3, stride, 1, bias=False), nn.BatchNorm2d(planes), nn.ReLU(),
        nn.Conv2d(planes, out, 1, bias=False), nn.BatchNorm2d(out))
    self.shortcut = nn.Identity() if stride == 1 and in_planes == out else nn.Sequential(
        nn.Conv2d(in_planes, out, 1, stride, bias=False), nn.BatchNorm2d(out))

  def forward(self, x):
    return F.relu(self.branch(x) + self.shortcut(x))


class ResNet50(nn.Module):
  """ImageNet ResNet-50 v1.5 (7x7/2 stem, 3x3/2 max pool, stages 3, 4, 6, 3): convjax's resnet50."""

  def __init__(self, num_classes: int = 1000, in_channels: int = 3):
    super().__init__()
    layers = [nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
              nn.MaxPool2d(3, 2, 1)]
    planes = 64
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512))):
      for index in range(blocks):
        layers.append(Bottleneck(planes, width, 2 if stage > 0 and index == 0 else 1))
        planes = 4 * width
    self.features = nn.Sequential(*layers)
    self.classifier = nn.Linear(planes, num_classes)

  def forward(self, x):
    return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


class BasicBlockB(nn.Module):
  """conv3x3(stride)-bn-relu-conv3x3-bn + projection shortcut (1x1 conv-bn) where the shape
  changes, relu: convjax.models.resnet.BasicBlock in the ImageNet ResNets."""

  def __init__(self, in_planes: int, planes: int, stride: int):
    super().__init__()
    self.branch = nn.Sequential(
        nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False), nn.BatchNorm2d(planes), nn.ReLU(),
        nn.Conv2d(planes, planes, 3, 1, 1, bias=False), nn.BatchNorm2d(planes))
    self.shortcut = nn.Identity() if stride == 1 and in_planes == planes else nn.Sequential(
        nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

  def forward(self, x):
    return F.relu(self.branch(x) + self.shortcut(x))


def imagenet_resnet(block, expansion: int, stage_sizes, num_classes: int = 1000,
                    in_channels: int = 3) -> nn.Module:
  """7x7/2 stem, 3x3/2 max pool, four stages of `block` (64 to 512 wide), global average pool."""
  layers = [nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
            nn.MaxPool2d(3, 2, 1)]
  planes = 64
  for stage, (blocks, width) in enumerate(zip(stage_sizes, (64, 128, 256, 512))):
    for index in range(blocks):
      layers.append(block(planes, width, 2 if stage > 0 and index == 0 else 1))
      planes = expansion * width
  return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                       nn.Linear(planes, num_classes))


def _classifier(inputs: int, num_classes: int) -> nn.Sequential:
  """Dropout-FC 4096-relu, dropout-FC 4096-relu, FC classes: AlexNet's and VGG's head."""
  return nn.Sequential(nn.Dropout(0.5), nn.Linear(inputs, 4096), nn.ReLU(), nn.Dropout(0.5),
                       nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, num_classes))


def alexnet(num_classes: int = 1000, in_channels: int = 3) -> nn.Module:
  """convjax's alexnet (single tower, torchvision's): 64, 192, 384, 256, 256 filters."""
  conv = lambda i, o, k, s, p: [nn.Conv2d(i, o, k, s, p), nn.ReLU()]
  return nn.Sequential(
      *conv(in_channels, 64, 11, 4, 2), nn.MaxPool2d(3, 2), *conv(64, 192, 5, 1, 2),
      nn.MaxPool2d(3, 2), *conv(192, 384, 3, 1, 1), *conv(384, 256, 3, 1, 1),
      *conv(256, 256, 3, 1, 1), nn.MaxPool2d(3, 2), nn.AdaptiveAvgPool2d(6), nn.Flatten(),
      _classifier(256 * 6 * 6, num_classes))


def vgg11_bn(num_classes: int = 1000, in_channels: int = 3) -> nn.Module:
  """VGG configuration A with batch norm: 64, M, 128, M, 256 x2, M, 512 x2, M, 512 x2, M."""
  layers, channels = [], in_channels
  for width in (64, 'M', 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512, 'M'):
    if width == 'M':
      layers.append(nn.MaxPool2d(2))
    else:
      layers += [nn.Conv2d(channels, width, 3, 1, 1), nn.BatchNorm2d(width), nn.ReLU()]
      channels = width
  return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(7), nn.Flatten(),
                       _classifier(512 * 7 * 7, num_classes))


class DenseLayer(nn.Module):
  """bn-relu-1x1 conv (4k)-bn-relu-3x3 conv (k), concatenated onto its input."""

  def __init__(self, channels: int, growth: int):
    super().__init__()
    self.layer = nn.Sequential(
        nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, 4 * growth, 1, bias=False),
        nn.BatchNorm2d(4 * growth), nn.ReLU(), nn.Conv2d(4 * growth, growth, 3, 1, 1, bias=False))

  def forward(self, x):
    return torch.cat([x, self.layer(x)], 1)


def densenet121(num_classes: int = 1000, in_channels: int = 3) -> nn.Module:
  """DenseNet-BC-121: growth 32, blocks of 6, 12, 24, 16 layers, transitions halving channels."""
  layers = [nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
            nn.MaxPool2d(3, 2, 1)]
  channels = 64
  for index, size in enumerate((6, 12, 24, 16)):
    for _ in range(size):
      layers.append(DenseLayer(channels, 32))
      channels += 32
    if index < 3:
      layers += [nn.BatchNorm2d(channels), nn.ReLU(),
                 nn.Conv2d(channels, channels // 2, 1, bias=False), nn.AvgPool2d(2)]
      channels //= 2
  return nn.Sequential(*layers, nn.BatchNorm2d(channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                       nn.Flatten(), nn.Linear(channels, num_classes))


def _torchvision(name: str):
  """torchvision's own builder of `name` (the modern families, whose counts convjax matches
  exactly); torchvision 0.29.1 needs torch 2.14.1, so these run only where both are installed
  (benchmarks/requirements-torchvision.txt)."""
  def build(num_classes: int = 1000, in_channels: int = 3) -> nn.Module:
    import torchvision  # pylint: disable=import-outside-toplevel
    if in_channels != 3:
      raise ValueError(f'torchvision {name} takes 3 input channels, not {in_channels}')
    return getattr(torchvision.models, name)(num_classes=num_classes)
  return build


MODELS = {'lenet5': LeNet5, 'resnet20': lambda **kw: CifarResNet(20, **kw), 'resnet50': ResNet50,
          'resnet18': lambda **kw: imagenet_resnet(BasicBlockB, 1, (2, 2, 2, 2), **kw),
          'alexnet': alexnet, 'vgg11_bn': vgg11_bn, 'densenet121': densenet121,
          **{name: _torchvision(name) for name in ('mobilenet_v2', 'efficientnet_b0',
                                                   'convnext_tiny')}}


def count_params(model: nn.Module) -> int:
  return sum(p.numel() for p in model.parameters())

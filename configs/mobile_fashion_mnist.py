"""The families after ResNet on Fashion-MNIST: MobileNetV2, MobileNetV3, EfficientNet-B0,
RegNetX/Y-400MF, ConvNeXt-T, ResNeXt-50 and DenseNet-BC-100, one recipe for all.

  python -m experiments.train --config=configs/mobile_fashion_mnist.py \
      --workdir=workdirs/mobilenet_v2_fashion_mnist
  # the others: --config.model=mobilenet_v3_small | mobilenet_v3_large | efficientnet_b0 |
  #   regnet_x_400mf | regnet_y_400mf | convnext_tiny | resnext50_32x4d | densenet_bc100

On 28x28 inputs each ImageNet model takes its small-image variant (models.create): stems of
stride 1, ConvNeXt's patches 2x2. The recipe is the one these papers train with, scaled to a
small dataset: AdamW (ConvNeXt's optimiser; decoupled weight decay 0.05), peak learning rate
2e-3 on a cosine schedule after a 2-epoch warm-up, batch 128, label smoothing 0.1, 2-pixel
translations, flips and random erasing on a quarter of the images, an EMA of the weights, flip
test-time augmentation; 30 epochs.

Cost, measured (`python -m experiments.benchmark --models=... --batch_size=96 --mode=train
--input_shape=28,28,1`, float32, 2 Xeon cores, 2026-12-05), training images/s: MobileNetV3-small
777.9, RegNetX-400MF 425.7, MobileNetV2 379.6, EfficientNet-B0 223.2, ConvNeXt-T 84.2,
DenseNet-BC-100 42.3; 30 epochs take from 40 minutes (MobileNetV3-small) to 12 hours
(DenseNet-BC-100) there. Equal-time comparisons of several of them:
benchmarks/results/comparison_modern.
"""
from configs import resnet20_fashion_mnist

STEPS_PER_EPOCH = resnet20_fashion_mnist.STEPS_PER_EPOCH


def get_config():
  # ResNet-20's recipe (batch 128, label smoothing, translations, flips, random erasing, EMA,
  # flip TTA) with these papers' optimiser and schedule, in float32.
  config = resnet20_fashion_mnist.get_config()
  config.model = 'mobilenet_v2'
  config.half_precision = False
  config.num_epochs = 30.0
  config.optimizer = 'adamw'
  config.learning_rate = 2e-3
  config.weight_decay = 0.05
  config.warmup_epochs = 2.0
  config.eval_every_steps = STEPS_PER_EPOCH * 2
  config.checkpoint_every_steps = STEPS_PER_EPOCH
  return config

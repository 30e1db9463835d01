"""ResNet-20 on CIFAR-10, He et al. 2015 section 4.2: SGD with momentum 0.9, weight decay 1e-4,
batch 128, learning rate 0.1 divided by 10 at 32k and 48k iterations, 64k iterations in all
(91, 136 and 182 epochs of 390 steps), and the paper's augmentation: 4-pixel zero padding, random
32x32 crops and horizontal flips, done on the device. The paper reached 8.75% test error.

  python -m experiments.train --config=configs/resnet20_cifar10.py --workdir=workdirs/resnet20_cifar10

CIFAR-10 comes from TFDS (`--config.data_dir`, or `--config.download=True` with internet).
Any CIFAR ResNet: --config.model=resnet56. Another dataset: --config.dataset=fashion_mnist
(digit datasets need --config.augment.flip=False).
"""
from configs import default


def get_config():
  config = default.get_config()
  config.model = 'resnet20'
  config.dataset = 'cifar10'
  config.batch_size = 128
  config.num_epochs = 182.0
  config.optimizer = 'momentum'
  config.momentum = 0.9
  config.learning_rate = 0.1
  config.weight_decay = 1e-4
  config.lr_schedule = 'step'
  config.lr_decay_epochs = (91, 136)
  config.lr_decay_factor = 0.1
  config.augment.crop_padding = 4
  config.augment.flip = True
  return config

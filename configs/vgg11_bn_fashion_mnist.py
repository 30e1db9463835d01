"""VGG-11 with batch norm (configuration A) on Fashion-MNIST, with the 512-wide head that
28x28 inputs select automatically (the usual CIFAR VGG head).

  python -m experiments.train --config=configs/vgg11_bn_fashion_mnist.py \
      --workdir=workdirs/vgg11_bn_fashion_mnist

The paper's recipe (SGD, momentum 0.9, weight decay 5e-4, batch 256, learning rate 0.01) with
batch norm's usual larger rate. Result: see docs/models.md ("The architecture zoo").
"""
from configs import default


def get_config():
  config = default.get_config()
  config.model = 'vgg11_bn'
  config.dataset = 'fashion_mnist'
  config.batch_size = 128
  config.num_epochs = 10.0
  config.optimizer = 'momentum'
  config.momentum = 0.9
  config.learning_rate = 0.05
  config.weight_decay = 5e-4
  config.lr_schedule = 'cosine'
  config.warmup_epochs = 0.2
  return config

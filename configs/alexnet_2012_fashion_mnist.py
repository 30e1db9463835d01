"""AlexNet as in the 2012 paper (two towers as groups=2, LRN, overlapping pooling, dropout 0.5) on
Fashion-MNIST, with the small-image stem (conv1 5x5/1) that 28x28 inputs select automatically.

  python -m experiments.train --config=configs/alexnet_2012_fashion_mnist.py \
      --workdir=workdirs/alexnet_2012_fashion_mnist

The paper's recipe: SGD with momentum 0.9, weight decay 5e-4, batch 128, learning rate 0.01
divided by 10 when validation error stopped improving (a cosine schedule here).
Result: see docs/models.md ("The architecture zoo").
"""
from configs import default


def get_config():
  config = default.get_config()
  config.model = 'alexnet_2012'
  config.dataset = 'fashion_mnist'
  config.batch_size = 128
  config.num_epochs = 10.0
  config.optimizer = 'momentum'
  config.momentum = 0.9
  config.learning_rate = 0.01
  config.weight_decay = 5e-4
  config.lr_schedule = 'cosine'
  config.warmup_epochs = 0.2
  return config

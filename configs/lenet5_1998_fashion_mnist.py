"""LeNet-5 as published in 1998 (scaled tanh, trainable subsampling, C3's connection table, RBF
output units) on Fashion-MNIST, 28x28 images centred in the paper's 32x32 field.

  python -m experiments.train --config=configs/lenet5_1998_fashion_mnist.py \
      --workdir=workdirs/lenet5_1998_fashion_mnist

The paper trained 20 epochs with stochastic diagonal Levenberg-Marquardt; Adam with a cosine
schedule stands in for it here. Result: see docs/models.md ("The architecture zoo").
"""
from configs import default


def get_config():
  config = default.get_config()
  config.model = 'lenet5_1998'
  config.dataset = 'fashion_mnist'
  config.batch_size = 128
  config.num_epochs = 10.0
  config.optimizer = 'adam'
  config.learning_rate = 1e-3
  config.lr_schedule = 'cosine'
  config.warmup_epochs = 0.5
  return config

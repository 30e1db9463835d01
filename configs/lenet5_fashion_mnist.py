"""LeNet-5 on Fashion-MNIST: the main job.

  python -m experiments.train --config=configs/lenet5_fashion_mnist.py --workdir=workdirs/lenet5_fashion_mnist

Result: see README.md ("Results") for the accuracy, wall time and throughput this config reached.
"""
from configs import default


def get_config():
  config = default.get_config()
  config.model = 'lenet5'
  config.dataset = 'fashion_mnist'
  config.batch_size = 128
  config.num_epochs = 10.0
  config.optimizer = 'adam'
  config.learning_rate = 2e-3
  config.lr_schedule = 'cosine'
  config.warmup_epochs = 0.5
  # One device: LeNet-5's step is too small to gain from splitting the CPU (PERFORMANCE.md).
  config.num_devices = 1
  return config

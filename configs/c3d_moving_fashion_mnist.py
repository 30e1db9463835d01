"""A small C3D-style 3-D convnet on Moving Fashion-MNIST, where the label is the moving item.

  python -m experiments.train --config=configs/c3d_moving_fashion_mnist.py \
      --workdir=workdirs/c3d_moving_fashion_mnist

The clips (8 frames of 36x72, two garments, one moving) are made from Fashion-MNIST at load time
(convjax/data/video.py). 3x3x3 kernels see three frames at once, so they can tell the moving item
from the still one; configs/framewise_moving_fashion_mnist.py trains the same net with 1x3x3
kernels, which cannot (its accuracy is bounded by 1/2), and configs/r2plus1d_moving_fashion_mnist.py
a (2+1)D residual net. Training mirrors clips left-right, which keeps every label.

Result: see README.md ("Results") for the accuracy and wall time this config reaches.
"""
from configs import default


def get_config():
  config = default.get_config()
  config.model = 'c3d_small'
  config.dataset = 'moving_fashion_mnist'
  config.batch_size = 32
  config.eval_batch_size = 250
  config.num_epochs = 8.0
  config.optimizer = 'adamw'
  config.learning_rate = 3e-3
  config.weight_decay = 0.01
  config.lr_schedule = 'cosine'
  config.warmup_epochs = 0.5
  config.augment.flip = True
  config.num_devices = 1
  return config

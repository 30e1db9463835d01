"""The frame-wise 2-D baseline on Moving Fashion-MNIST: a 2-D convnet on every frame, its
features averaged over the frames. It sees no motion, so it can at best name both garments and
guess which one moves: its test accuracy is bounded by 1/2.

  python -m experiments.train --config=configs/framewise_moving_fashion_mnist.py \
      --workdir=workdirs/framewise_moving_fashion_mnist

The same data, schedule and budget as configs/c3d_moving_fashion_mnist.py.

Result: see README.md ("Results") for the accuracy and wall time this config reaches.
"""
from configs import c3d_moving_fashion_mnist


def get_config():
  config = c3d_moving_fashion_mnist.get_config()
  config.model = 'framewise_2d'
  return config

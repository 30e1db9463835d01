"""A small R(2+1)D residual net (Tran et al. 2018) on Moving Fashion-MNIST: each 3x3x3
convolution factorised into a 1x3x3 spatial and a 3x1x1 temporal one.

  python -m experiments.train --config=configs/r2plus1d_moving_fashion_mnist.py \
      --workdir=workdirs/r2plus1d_moving_fashion_mnist

The same data, schedule and budget as configs/c3d_moving_fashion_mnist.py.

Result: see README.md ("Results") for the accuracy and wall time this config reaches.
"""
from configs import c3d_moving_fashion_mnist


def get_config():
  config = c3d_moving_fashion_mnist.get_config()
  config.model = 'r2plus1d_small'
  return config

"""A small R(2+1)D residual net (Tran et al. 2018) on Moving Fashion-MNIST: each 3x3x3
convolution factorised into a 1x3x3 spatial and a 3x1x1 temporal one.

  python -m experiments.train --config=configs/r2plus1d_moving_fashion_mnist.py \
      --workdir=workdirs/r2plus1d_moving_fashion_mnist

The same data and schedule as configs/c3d_moving_fashion_mnist.py, for 5 epochs instead of 8:
this net costs about twice as much per clip and learns faster, so that it too trains in under 15
minutes on 2 CPU cores.

Result: see README.md ("Results") for the accuracy and wall time this config reaches.
"""
from configs import c3d_moving_fashion_mnist


def get_config():
  config = c3d_moving_fashion_mnist.get_config()
  config.model = 'r2plus1d_small'
  config.num_epochs = 5.0
  return config
